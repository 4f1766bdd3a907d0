package policy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		"rules: [{name: a, images: [x], attestations: [{predicateType: 'https://slsa.dev/provenance/v1', authorities: [{key: keys/rsa2048.pub}], conditions: ['predicate.buildDefinition.buildType == \"https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1\"', 'subject.exists(s, s.digest.sha256 != \"\")']}]}]\n",
		"rules: [{name: a, images: [x], attestations: [{predicateType: slsaprovenance1, authorities: [{key: keys/rsa2048.pub}], conditions: ['1 +']}]}]\n",
		"rules:\n  - name: a\n    images: [x]\n    signatures:\n      authorities:\n        - key: keys/ecdsa-p256.pub\n          rekorKey: keys/rekor.pub\n          transparencyLog: optional\n        - {key: keys/ed25519.pub, transparencyLog: required}\n",
		"trustedRoot: [roots/trusted_root.json]\nrules:\n  - name: gh\n    images: [\"**\"]\n    signatures:\n      authorities:\n        - keyless:\n            issuer: https://token.actions.githubusercontent.com\n            subjectRegExp: '^https://github\\.com/myorg/'\n            sourceRepositoryURI: https://github.com/myorg/app\n            sourceRepositoryRefRegExp: ^refs/tags/\n            buildSignerURIRegExp: x\n          transparencyLog: optional\n        - keyless: {issuer: i, subject: s, rekorKey: keys/rekor.pub}\n",
		"trustedRoot: {tsa: [keys/rekor.pub]}\nrules:\n  - name: ca\n    images: [\"**\"]\n    signatures:\n      authorities:\n        - certificate: {roots: [ca/root.pem], intermediates: ca/intermediate.pem, subjectRegExp: '@example\\.com$', issuer: i, signingTime: verificationTime}\n          transparencyLog: required\n",
		"rules: [{name: a, images: [x], signatures: {authorities: [{certificate: {roots: ca/leaf.pem, subject: s}}]}}]\n",
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
			if s := r.Signatures; s != nil {
				if s.Threshold < 1 || s.Threshold > len(s.Authorities) {
					t.Fatalf("threshold out of range: %+v", s)
				}
				checkAuthorities(t, p, s.Authorities)
			}
			for _, a := range r.Attestations {
				if a.Line <= 0 || checkPredicateType(a.PredicateType) != nil {
					t.Fatalf("bad attestation: %+v", a)
				}
				checkAuthorities(t, p, a.Authorities)
				for _, c := range a.Conditions {
					if c.Program == nil || c.Line <= 0 {
						t.Fatalf("bad condition: %+v", c)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					ok, err := c.Eval(ctx, fuzzStatement)
					cancel()
					if err != nil && (ok || !errors.Is(err, ErrCondition)) {
						t.Fatalf("Eval %q = %v, %v", c.Expr, ok, err)
					}
				}
			}
		}
		for _, img := range fuzzImages {
			for _, ns := range []string{"", "default", "kube-system"} {
				p.Match(img, ns)
			}
		}
	})
}

// fuzzStatement is what FuzzParse evaluates the conditions it parses over.
var fuzzStatement = map[string]any{
	"predicateType": "https://slsa.dev/provenance/v1",
	"subject":       []any{map[string]any{"name": "x", "digest": map[string]any{"sha256": "ab"}}},
	"predicate":     map[string]any{"buildDefinition": map[string]any{"buildType": "t"}, "n": 1.0, "l": []any{"a", 2.0, nil, true}},
}

// checkAuthorities checks the invariants the verifier relies on.
func checkAuthorities(t *testing.T, p *Policy, auths []*Authority) {
	t.Helper()
	for _, a := range auths {
		switch {
		case (a.Key == nil) == (a.Keyless == nil):
			t.Fatalf("authority with key and keyless, or neither: %+v", a)
		case a.TransparencyLog != TlogRequired && a.TransparencyLog != TlogOptional:
			t.Fatalf("authority without transparencyLog: %+v", a)
		case a.Keyless != nil && len(p.TrustedRoots) == 0:
			t.Fatalf("keyless authority without trusted root: %+v", a)
		case a.Keyless != nil && ((a.Keyless.Issuer == "") == (a.Keyless.IssuerRegExp == nil) || (a.Keyless.Subject == "") == (a.Keyless.SubjectRegExp == nil)):
			t.Fatalf("keyless authority without exactly one issuer and subject: %+v", a.Keyless)
		case a.Key != nil && (a.Key.PublicKey == nil || (a.Key.Rekor != nil && a.Key.Rekor.PublicKey == nil)):
			t.Fatalf("key authority without a parsed key: %+v", a.Key)
		case a.Key != nil && a.Key.Rekor == nil && a.TransparencyLog == TlogRequired && len(p.TrustedRoots) == 0:
			t.Fatalf("required log entry with no log key: %+v", a)
		}
	}
}

// FuzzCondition compiles arbitrary expressions and evaluates those that
// compile over arbitrary statement JSON (bounded): no panic, no hang past
// the cost limit, every failure an ErrCondition.
func FuzzCondition(f *testing.F) {
	slsa, err := os.ReadFile("testdata/statements/slsa-v1.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][2]string{
		{`predicate.buildDefinition.buildType == "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"`, string(slsa)},
		{`subject.exists(s, s.digest.sha256.size() == 64)`, string(slsa)},
		{`subject.all(x, subject.all(y, x == y))`, `{"subject": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}`},
		{`predicate.a.b.c > 1.5 || predicate.l.exists(e, e == null)`, `{"predicate": {"a": {"b": {"c": 2}}, "l": [null]}}`},
		{`predicateType.matches("^https://") && has(predicate.x)`, `{"predicateType": 7, "predicate": []}`},
		{`predicate`, `{"predicate": true}`},
		{`predicate.map(k, k).size() > 0`, `{"predicate": {"a": 1}}`},
		{`string(predicate.n) == "1"`, `{"predicate": {"n": 1e308}}`},
		{`predicate.s + predicate.s == predicate.s`, `{"predicate": {"s": "é"}}`},
		{`int(predicate.n) > 0`, `{"predicate": {"n": 1e300}}`},
		{`1 +`, `{}`},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, expr string, data []byte) {
		if len(data) > 64<<10 {
			return // statements are bounded by the verifier long before this
		}
		c, err := compileCondition(expr)
		if err != nil {
			return
		}
		var st map[string]any
		if json.Unmarshal(data, &st) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ok, err := c.Eval(ctx, st)
		if err != nil && (ok || !errors.Is(err, ErrCondition)) {
			t.Fatalf("Eval = %v, %v", ok, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Eval ran into the deadline instead of the cost limit: %v", err)
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
		// The canonical form is a fixed point; only the spelling used to
		// reach the registry (Location) may differ.
		back, err := ParseImage(img.String())
		back.Location, img.Location = "", ""
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
