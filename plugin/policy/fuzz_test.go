package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var fuzzImages = []Image{
	{Repository: "docker.io/library/nginx", Tag: "latest"},
	{Repository: "registry.k8s.io/pause", Tag: "3.10", Digest: dig},
	{Repository: "registry.example.com/myorg/team/app", Digest: dig},
	{Repository: "127.0.0.1:5000/app"},
}

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, every
// error must be a located *Error, and a policy it returns must be usable.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"",
		"{}",
		"mode: warn\ndefault: allow\n",
		"rules:\n  - name: a\n    images: [\"**\"]\n    action: allow\n",
		"rules:\n  - name: a\n    images: [nginx]\n    signatures:\n      threshold: 1\n      authorities: [{key: keys/ed25519.pub}]\n",
		"trustedRoot: roots/trusted_root.json\nrules:\n  - name: k\n    images: [\"x.io/*\"]\n    namespaces: [\"a-*\"]\n    signatures:\n      authorities:\n        - keyless: {issuer: i, subjectRegExp: '^s$'}\n",
		"rules: [{name: a, images: [x], attestations: [{predicateType: p, authorities: [{key: keys/rsa2048.pub}]}]}]\n",
		"a: &x 1\nb: *x\n",
		"mode: enforce\n---\nmode: warn\n",
		"offline: {maxVerdictAge: 1h}\n",
		"rules: [\n",
		"\t- x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(testPath, data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not a *Error wrapping ErrInvalid: %T %v", err, err)
			}
			if e.Line <= 0 && len(data) <= maxPolicySize {
				t.Fatalf("error has no line: %v", err)
			}
			return
		}
		if p.Mode == "" || p.Default == "" || !strings.HasPrefix(p.Digest, "sha256:") {
			t.Fatalf("incomplete policy: %+v", p)
		}
		for _, r := range p.Rules {
			if r.Name == "" || len(r.Images) == 0 || r.Mode == "" {
				t.Fatalf("incomplete rule: %+v", r)
			}
			if r.Action == ActionVerify && r.Signatures == nil && len(r.Attestations) == 0 {
				t.Fatalf("verify rule without requirements: %+v", r)
			}
			if s := r.Signatures; s != nil && (s.Threshold < 1 || s.Threshold > len(s.Authorities)) {
				t.Fatalf("threshold out of range: %+v", s)
			}
		}
		for _, img := range fuzzImages {
			for _, ns := range []string{"", "default", "kube-system"} {
				p.Match(img, ns)
			}
		}
	})
}

// FuzzParseImage checks that references never panic and that what parses
// round-trips through String.
func FuzzParseImage(f *testing.F) {
	for _, s := range []string{
		"nginx", "nginx:1.25", "nginx@" + dig, "reg:5000/a/b:t@" + dig, "localhost/a",
		"index.docker.io/library/nginx", dig, "a@b@c", "UPPER/x", "x.io/a:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		img, err := ParseImage(ref)
		if err != nil {
			return
		}
		if img.Repository == "" || !strings.Contains(img.Repository, "/") {
			t.Fatalf("ParseImage(%q) = %+v: repository without registry", ref, img)
		}
		if img.Tag == "" && img.Digest == "" {
			t.Fatalf("ParseImage(%q) = %+v: neither tag nor digest", ref, img)
		}
		back, err := ParseImage(img.String())
		if err != nil || back != img {
			t.Fatalf("ParseImage(%q) = %+v; its String %q parses to %+v, %v", ref, img, img.String(), back, err)
		}
	})
}

// FuzzGlob compares the compiled matcher with a regexp built the obvious
// way, and checks that pattern normalisation never panics.
func FuzzGlob(f *testing.F) {
	for _, s := range [][3]string{
		{"registry.k8s.io/pause:*", "registry.k8s.io/pause", "3.10"},
		{"a/**/c", "a/b/x", "c"},
		{"*.example.com/**", "r.example.com/x", ""},
		{"x/a?c", "x/abc", ""},
		{"**a**a**b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "a"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, a, b string) {
		normalisePattern(pattern) // must not panic
		if len(pattern) > maxPattern || strings.Contains(pattern, "***") || !ascii(pattern+a+b) {
			return
		}
		g, err := compileGlob(pattern)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", pattern, err)
		}
		re := reference(pattern)
		if got, want := g.match(a, 0, ""), re.MatchString(a); got != want {
			t.Fatalf("%q vs %q: matcher %v, reference %v", pattern, a, got, want)
		}
		if got, want := g.match(a, ':', b), re.MatchString(a+":"+b); got != want {
			t.Fatalf("%q vs %q: matcher %v, reference %v", pattern, a+":"+b, got, want)
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
