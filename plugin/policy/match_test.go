package policy

import (
	"math/rand"
	"regexp"
	"strings"
	"testing"
)

const (
	dig  = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	dig2 = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func TestParseImage(t *testing.T) {
	for _, tc := range []struct {
		ref  string
		want Image
		err  string
	}{
		{ref: "nginx", want: Image{Repository: "docker.io/library/nginx", Tag: "latest"}},
		{ref: "nginx:1.25", want: Image{Repository: "docker.io/library/nginx", Tag: "1.25", Digest: ""}},
		{ref: "nginx@" + dig, want: Image{Repository: "docker.io/library/nginx", Tag: "", Digest: dig}},
		{ref: "nginx:1.25@" + dig, want: Image{Repository: "docker.io/library/nginx", Tag: "1.25", Digest: dig}},
		{ref: "docker.io/library/nginx:latest", want: Image{Repository: "docker.io/library/nginx", Tag: "latest", Digest: ""}},
		{ref: "docker.io/nginx", want: Image{Repository: "docker.io/library/nginx", Tag: "latest", Digest: ""}},
		{ref: "index.docker.io/library/nginx", want: Image{Repository: "docker.io/library/nginx", Tag: "latest", Digest: ""}},
		{ref: "myorg/app:v1", want: Image{Repository: "docker.io/myorg/app", Tag: "v1", Digest: ""}},
		{ref: "quay.io/x/y", want: Image{Repository: "quay.io/x/y", Tag: "latest", Digest: ""}},
		{ref: "reg:5000/a/b:t@" + dig, want: Image{Repository: "reg:5000/a/b", Tag: "t", Digest: dig}},
		{ref: "reg:5000/a/b@" + dig, want: Image{Repository: "reg:5000/a/b", Tag: "", Digest: dig}},
		{ref: "127.0.0.1:5000/app", want: Image{Repository: "127.0.0.1:5000/app", Tag: "latest", Digest: ""}},
		{ref: "localhost/app:v2", want: Image{Repository: "127.0.0.1/app", Tag: "v2", Digest: ""}},
		{ref: "Registry.Example.COM/app:V1", want: Image{Repository: "registry.example.com/app", Tag: "V1", Digest: ""}},
		{ref: "registry.k8s.io/pause:3.10", want: Image{Repository: "registry.k8s.io/pause", Tag: "3.10", Digest: ""}},
		{ref: "", err: "empty"},
		{ref: dig, err: "bare image ID"},
		{ref: "nginx@sha256:abc", err: "digest"},
		{ref: "nginx@" + dig + "@" + dig2, err: "exactly one '@'"},
		{ref: "NGINX", err: "repository"},
		{ref: "nginx:", err: "tag"},
		{ref: "nginx:bad tag", err: "tag"},
		{ref: "a b", err: "repository"},
		{ref: strings.Repeat("a", maxRefLen+1), err: "longer than"},
		{ref: strings.Repeat("0", 250), err: "repository longer than 255"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			got, err := ParseImage(tc.ref)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("ParseImage(%q) = %+v, %v; want error containing %q", tc.ref, got, err, tc.err)
				}
				return
			}
			got.Location = "" // the spelling for reaching the registry; see TestRegressionRegistrySpellings
			if err != nil || got != tc.want {
				t.Errorf("ParseImage(%q) = %+v, %v; want %+v", tc.ref, got, err, tc.want)
			}
		})
	}
}

func TestImageString(t *testing.T) {
	for _, tc := range []struct {
		img  Image
		want string
	}{
		{Image{Repository: "docker.io/library/nginx", Tag: "latest", Digest: ""}, "docker.io/library/nginx:latest"},
		{Image{Repository: "docker.io/library/nginx", Tag: "", Digest: dig}, "docker.io/library/nginx@" + dig},
		{Image{Repository: "reg:5000/a", Tag: "t", Digest: dig}, "reg:5000/a:t@" + dig},
		{Image{Repository: "reg:5000/a", Tag: "", Digest: ""}, "reg:5000/a"},
	} {
		if got := tc.img.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.img, got, tc.want)
		}
		// String round-trips through ParseImage when a tag or digest is set.
		if tc.img.Tag != "" || tc.img.Digest != "" {
			back, err := ParseImage(tc.img.String())
			back.Location = ""
			if err != nil || back != tc.img {
				t.Errorf("ParseImage(%q) = %+v, %v", tc.img.String(), back, err)
			}
		}
	}
}

func TestNormalisePattern(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "nginx", want: "docker.io/library/nginx"},
		{in: "nginx:*", want: "docker.io/library/nginx:*"},
		{in: "nginx@*", want: "docker.io/library/nginx@*"},
		{in: "myorg/app", want: "docker.io/myorg/app"},
		{in: "myorg/*", want: "docker.io/myorg/*"},
		{in: "docker.io/nginx", want: "docker.io/library/nginx"},
		{in: "docker.io/*", want: "docker.io/library/*"},
		{in: "docker.io/**", want: "docker.io/**"},
		{in: "index.docker.io/x/y", want: "docker.io/x/y"},
		{in: "quay.io/x/*", want: "quay.io/x/*"},
		{in: "localhost/app", want: "127.0.0.1/app"},
		{in: "localhost:5000/app:*", want: "127.0.0.1:5000/app:*"},
		{in: "127.0.0.1:5000/**", want: "127.0.0.1:5000/**"},
		{in: "**", want: "**"},
		{in: "*/foo", want: "*/foo"},
		{in: "*.example.com/**", want: "*.example.com/**"},
		{in: "registry.k8s.io/pause:3.*", want: "registry.k8s.io/pause:3.*"},
		{in: "x.io/app:V1", want: "x.io/app:V1"},
		{in: "x.io/app@" + dig, want: "x.io/app@" + dig},
		{in: "", err: "empty image pattern"},
		{in: "x.io/***", err: "***"},
		{in: "x.io/a b", err: "' '"},
		{in: "X.io/a", want: "x.io/a"},
		{in: "x.io/A", err: "upper-case"},
		{in: "x.io/App", err: "upper-case"},
		{in: "ngin*", err: "can never match"},
		{in: "*", err: "can never match"},
		{in: "x.io//a", err: "empty path segment"},
		{in: "/a", err: "empty path segment"},
		{in: "x.io/a/", err: "empty path segment"},
		{in: "x.io/a:", err: "empty tag"},
		{in: "x.io/a@", err: "empty digest"},
		{in: "x.io/a@b@c", err: "more than one @"},
		{in: ":tag", err: "no repository"},
		{in: "x.io/a:t[1]", err: "'['"},
		{in: "x.io/a" + strings.Repeat("b", maxPattern), err: "longer than"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := normalisePattern(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("normalisePattern(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("normalisePattern(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, text string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/bc", false},
		{"a/b", "a/", false},
		{"a/*", "a/b", true},
		{"a/*", "a/", true},
		{"a/*", "a/b/c", false},
		{"a/**", "a/b/c", true},
		{"a/**", "a/", true},
		{"a/**", "a", false},
		{"a/**/c", "a/b/x/c", true},
		{"a/**/c", "a/c", false},
		{"a/**c", "a/c", true},
		{"a/*/c", "a/b/c", true},
		{"a/*/c", "a/b/x/c", false},
		{"a/?", "a/b", true},
		{"a/?", "a/", false},
		{"a?b", "a/b", false},
		{"a/?c", "a/bc", true},
		{"*.example.com/**", "registry.example.com/x/y", true},
		{"*.example.com/**", "evil.com/x.example.com/y", false},
		{"x.io/a*b*c", "x.io/abbbc", true},
		{"x.io/a*b*c", "x.io/ab/c", false},
		{"x.io/a.b", "x.io/axb", false}, // '.' is literal
		{"x.io/a+", "x.io/aa", false},   // '+' is literal
		{"x.io/**a**a**a**b", strings.Repeat("x.io/a", 50), false},
		{"r/p:*", "r/p:3.9", true},
		{"r/p:*", "r/p", false},
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"**", "a/b:c@d", true},
		// More than 64 tokens: state spans several words.
		{"x.io/" + strings.Repeat("a", 70) + "/*", "x.io/" + strings.Repeat("a", 70) + "/b", true},
		{"x.io/" + strings.Repeat("a", 70) + "/*", "x.io/" + strings.Repeat("a", 69) + "/b", false},
		{"x.io/" + strings.Repeat("a*", 40) + "z", "x.io/" + strings.Repeat("a", 50) + "z", true},
		{"x.io/" + strings.Repeat("a*", 40) + "z", "x.io/" + strings.Repeat("a", 39) + "z", false},
		{"x.io/" + strings.Repeat("a*", 40) + "z", "x.io/" + strings.Repeat("ab", 40) + "z", true},
	} {
		g, err := compileGlob(tc.pattern)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", tc.pattern, err)
		}
		if got := g.match(tc.text, 0, ""); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.text, got, tc.want)
		}
		if got, want := g.match(tc.text, 0, ""), reference(tc.pattern).MatchString(tc.text); got != want {
			t.Errorf("%q vs %q: matcher %v, reference regexp %v", tc.pattern, tc.text, got, want)
		}
	}
}

// reference compiles a glob to a regexp, the obvious slow way, to check
// the bit-parallel matcher against. It agrees with the matcher on ASCII
// text (regexp counts runes where the matcher counts bytes).
func reference(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(`.*`)
			i++
		case p[i] == '*':
			b.WriteString(`[^/]*`)
		case p[i] == '?':
			b.WriteString(`[^/]`)
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// TestGlobRandom compares the matcher with the reference on random
// patterns and texts over a small alphabet, where mistakes show.
func TestGlobRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	gen := func(alphabet string, n int) string {
		b := make([]byte, rng.Intn(n))
		for i := range b {
			b[i] = alphabet[rng.Intn(len(alphabet))]
		}
		return string(b)
	}
	for i := 0; i < 20000; i++ {
		p := gen("ab/*?:", 12)
		if strings.Contains(p, "***") {
			continue
		}
		g, err := compileGlob(p)
		if err != nil {
			t.Fatal(err)
		}
		a, b := gen("ab/:", 10), gen("ab/:", 6)
		sep := byte(0)
		if rng.Intn(2) == 0 {
			sep = ':'
		}
		text := a
		if sep != 0 {
			text = a + string(sep) + b
		}
		if got, want := g.match(a, sep, b), reference(p).MatchString(text); got != want {
			t.Fatalf("%q vs %q: matcher %v, reference %v", p, text, got, want)
		}
	}
}

func testPolicy(t testing.TB) *Policy {
	t.Helper()
	p, err := Parse(testPath, y(
		"rules:",
		"  - name: pause",
		"    images: [\"registry.k8s.io/pause:*\", \"registry.k8s.io/pause@*\"]",
		"    action: allow",
		"  - name: kube-system-only",
		"    images: [\"registry.k8s.io/**\"]",
		"    namespaces: [kube-system]",
		"    action: allow",
		"  - name: nginx",
		"    images: [\"nginx:1.*\"]",
		"    namespaces: [\"prod-*\", staging]",
		"    action: allow",
		"  - name: nginx-deny",
		"    images: [nginx]",
		"    action: deny",
		"  - name: pinned",
		"    images: [\"x.io/app@"+dig+"\"]",
		"    action: allow",
		"  - name: myorg",
		"    images: [\"registry.example.com/myorg/**\", \"myorg/*\"]",
		"    signatures:",
		"      authorities: [{key: keys/ecdsa-p256.pub}]",
		"  - name: catch-all",
		"    images: [\"**\"]",
		"    namespaces: [\"*\"]",
		"    action: deny",
	))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMatch(t *testing.T) {
	p := testPolicy(t)
	for _, tc := range []struct {
		ref, namespace, want string
	}{
		{"registry.k8s.io/pause:3.10", "default", "pause"},
		{"registry.k8s.io/pause@" + dig, "default", "pause"},
		{"registry.k8s.io/pause:3.10@" + dig, "default", "pause"},
		{"registry.k8s.io/coredns/coredns:v1.11", "kube-system", "kube-system-only"},
		{"registry.k8s.io/coredns/coredns:v1.11", "default", "catch-all"},
		{"nginx:1.25", "prod-eu", "nginx"},
		{"docker.io/library/nginx:1.25", "staging", "nginx"},
		{"nginx:1.25", "prod", "nginx-deny"},                   // "prod-*" needs the dash
		{"nginx:1.25", "", "nginx-deny"},                       // no namespace matches no namespace list
		{"nginx:2.0", "prod-eu", "nginx-deny"},                 // first match wins: nginx does not match
		{"nginx@" + dig, "prod-eu", "nginx-deny"},              // no tag: "nginx:1.*" cannot match
		{"docker.io/library/nginx:1", "prod-eu", "nginx-deny"}, // "1.*" needs the dot
		{"x.io/app@" + dig, "a", "pinned"},
		{"x.io/app:v1@" + dig, "a", "pinned"},
		{"x.io/app@" + dig2, "a", "catch-all"},
		{"registry.example.com/myorg/team/app:v1", "a", "myorg"},
		{"registry.example.com/myorgevil/app:v1", "a", "catch-all"},
		{"myorg/app", "a", "myorg"},
		{"docker.io/myorg/app:v1", "a", "myorg"},
		{"quay.io/x/y", "a", "catch-all"},
		{"quay.io/x/y", "", "catch-all"}, // "*" matches no namespace too
	} {
		t.Run(tc.ref+" in "+tc.namespace, func(t *testing.T) {
			img, err := ParseImage(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			r := p.Match(img, tc.namespace)
			if r == nil || r.Name != tc.want {
				t.Errorf("Match(%+v, %q) = %v, want %s", img, tc.namespace, r, tc.want)
			}
		})
	}
}

func TestMatchNone(t *testing.T) {
	p, err := Parse(testPath, y("rules:", "  - name: a", "    images: [x.io/a]", "    action: allow"))
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Match(Image{Repository: "x.io/b", Tag: "latest"}, "ns"); r != nil {
		t.Errorf("Match = %s, want nil", r.Name)
	}
	if r := (&Policy{}).Match(Image{Repository: "x.io/a"}, ""); r != nil {
		t.Errorf("empty policy matched %s", r.Name)
	}
}

// A Rule built by hand (tests of other packages) still matches.
func TestMatchHandBuiltRule(t *testing.T) {
	p := &Policy{Rules: []*Rule{
		{Name: "bad", Images: []string{"x.io/***"}},
		{Name: "ns", Images: []string{"x.io/a"}, Namespaces: []string{"prod"}},
		{Name: "a", Images: []string{"nginx:*"}},
	}}
	if r := p.Match(Image{Repository: "docker.io/library/nginx", Tag: "1"}, "dev"); r == nil || r.Name != "a" {
		t.Errorf("Match = %v, want a", r)
	}
	if r := p.Match(Image{Repository: "x.io/a"}, "prod"); r == nil || r.Name != "ns" {
		t.Errorf("Match = %v, want ns", r)
	}
	if r := p.Match(Image{Repository: "x.io/a"}, "dev"); r != nil {
		t.Errorf("Match = %v, want nil", r)
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	p := testPolicy(t)
	img, _ := ParseImage("quay.io/some/image:v1.2.3@" + dig)
	allocs := testing.AllocsPerRun(100, func() {
		if r := p.Match(img, "default"); r == nil || r.Name != "catch-all" {
			t.Fatal("wrong rule")
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times", allocs)
	}
}

func BenchmarkMatch(b *testing.B) {
	p := testPolicy(b)
	for _, bc := range []struct{ name, ref, ns string }{
		{"first rule", "registry.k8s.io/pause:3.10@" + dig, "kube-system"},
		{"last rule", "quay.io/some/image:v1.2.3@" + dig, "default"},
		{"globstar", "registry.example.com/myorg/team/sub/app:v1@" + dig, "default"},
	} {
		img, err := ParseImage(bc.ref)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if p.Match(img, bc.ns) == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}

// TestRegressionRegistrySpellings: every spelling of a registry that the
// runtime would pull from the same place matches the same rule, whether the
// spelling is in the reference or in the rule; spellings of other places
// do not, and numeric hosts that resolvers read differently are refused.
func TestRegressionRegistrySpellings(t *testing.T) {
	groups := []struct {
		patterns []string // each, alone in a rule, must match every ref
		refs     []string
		others   []string // must match none of the patterns
	}{
		{
			patterns: []string{"127.0.0.1:5000/**", "localhost:5000/**", "[::ffff:7f00:1]:5000/**", "127.0.0.1:05000/**"},
			refs: []string{"127.0.0.1:5000/app:v1", "127.0.0.1:05000/app:v1", "[::ffff:7f00:1]:5000/app:v1", "[::FFFF:127.0.0.1]:5000/app:v1",
				"localhost:5000/app:v1", "LOCALHOST:5000/app:v1", "localhost.:5000/app:v1", "127.0.0.1:005000/app@" + dig},
			others: []string{"127.0.0.1:5001/app:v1", "127.0.0.2:5000/app:v1", "[::1]:5000/app:v1", "127.0.0.1/app:v1"},
		},
		{
			patterns: []string{"docker.io/**", "registry-1.docker.io/**", "index.docker.io/**", "docker.io:443/**"},
			refs: []string{"nginx", "docker.io/library/nginx:1", "registry-1.docker.io/library/nginx:1", "registry-1.docker.io/nginx:1",
				"index.docker.io/library/nginx", "registry.hub.docker.com/library/nginx", "Docker.IO/library/nginx", "docker.io:443/library/nginx", "docker.io./library/nginx"},
			others: []string{"docker.io:5000/library/nginx", "quay.io/library/nginx", "mirror.docker.io/library/nginx"},
		},
		{
			patterns: []string{"registry.example.com/team/**", "Registry.Example.Com./team/**", "registry.example.com:443/team/**"},
			refs:     []string{"registry.example.com/team/app:v1", "REGISTRY.example.com/team/app:v1", "registry.example.com.:443/team/app:v1", "registry.example.com:0443/team/app:v1"},
			others:   []string{"registry.example.com:8443/team/app:v1", "registry.example.com/other/app:v1"},
		},
	}
	for _, g := range groups {
		for _, pat := range g.patterns {
			norm, err := normalisePattern(pat)
			if err != nil {
				t.Fatalf("pattern %q: %v", pat, err)
			}
			r := &Rule{Name: "r", Images: []string{norm}}
			for _, ref := range g.refs {
				img, err := ParseImage(ref)
				if err != nil {
					t.Errorf("ParseImage(%q): %v", ref, err)
					continue
				}
				if img.Digest == "" && img.Tag == "" {
					img.Tag = "latest"
				}
				if !r.Matches(img, "default") {
					t.Errorf("pattern %q (%q) does not match %q (%s)", pat, norm, ref, img.Repository)
				}
			}
			for _, ref := range g.others {
				img, err := ParseImage(ref)
				if err != nil {
					continue
				}
				if r.Matches(img, "default") {
					t.Errorf("pattern %q (%q) matches %q (%s), another place", pat, norm, ref, img.Repository)
				}
			}
		}
	}
	for _, ref := range []string{"127.1:5000/app:v1", "0177.0.0.1:5000/app:v1", "127.000.000.001:5000/app:v1", "0x7f.0.0.1:5000/app:v1", "[fe80::1%25eth0]:5000/a:v1", "127.0.0.1:0/app:v1", "127.0.0.1:70000/app:v1"} {
		if img, err := ParseImage(ref); err == nil {
			t.Errorf("ParseImage(%q) = %+v; want an error: resolvers disagree on what it names", ref, img)
		}
	}
}
