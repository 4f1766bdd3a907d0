package policyimport

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/plugin/policy"
)

// loadImported writes res (its inline keys and a trusted root) into a
// folder and parses it as the daemon would.
func loadImported(t *testing.T, res *Result) *policy.Policy {
	t.Helper()
	dir := t.TempDir()
	root, err := os.ReadFile(filepath.Join("..", "policy", "testdata", "roots", "trusted_root.json"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"roots/trusted_root.json": root}
	for k, v := range res.Files {
		files[k] = v
	}
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(p, res.YAML, 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(p)
	if err != nil {
		t.Fatalf("the imported policy does not parse: %v\n%s", err, res.YAML)
	}
	return pol
}

// TestClusterImagePolicyExamples: policy-controller's documented examples,
// imported together: inline keys written beside the policy, keyless
// identities, an attestation with its predicate type's long name, a
// static pass; its CUE policy and the several-policies semantics are said
// and make the import incomplete.
func TestClusterImagePolicyExamples(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "clusterimagepolicy-examples.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := FromClusterImagePolicy(data)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v, want ErrIncomplete (a CUE policy, several policies)", err)
	}
	text := string(res.YAML)
	for _, want := range []string{"cue policy is not evaluated", "several ClusterImagePolicies", "trustedRoot: roots/trusted_root.json", "https://spdx.dev/Document"} {
		if !strings.Contains(text, want) {
			t.Errorf("the import lacks %q:\n%s", want, text)
		}
	}
	pol := loadImported(t, res)
	tests := []struct {
		image  string
		rule   string
		action policy.Action
	}{
		{"registry.example.com/team/app:v1", "image-policy", policy.ActionVerify},
		{"ghcr.io/sigstore/cosign:v2", "image-policy-keyless", policy.ActionVerify},
		{"ghcr.io/example/app:v1", "keyless-attestation-sbom-spdxjson", policy.ActionVerify},
		{"registry.k8s.io/pause:3.10", "allow-k8s", policy.ActionAllow},
	}
	for _, tt := range tests {
		img, _ := policy.ParseImage(tt.image)
		r := pol.Match(img, "default")
		if r == nil || r.Name != tt.rule || r.Action != tt.action {
			t.Errorf("%s: rule %+v, want %s %s", tt.image, r, tt.rule, tt.action)
		}
	}
	img, _ := policy.ParseImage("ghcr.io/example/app:v1")
	if r := pol.Match(img, "default"); r == nil || len(r.Attestations) != 1 || r.Attestations[0].PredicateType != "https://spdx.dev/Document" {
		t.Errorf("attestation requirement: %+v", r)
	}
	if pol.Default != policy.ActionAllow {
		t.Error("images no policy matches are let through by policy-controller; the import must say so")
	}
}

// TestClusterImagePolicyComplete: a single key-based policy maps fully.
func TestClusterImagePolicyComplete(t *testing.T) {
	key, _ := os.ReadFile(filepath.Join("..", "policy", "testdata", "keys", "ecdsa-p256.pub"))
	doc := "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: only\nspec:\n  mode: warn\n  images:\n  - glob: \"index.docker.io/myorg/**\"\n  authorities:\n  - key:\n      data: |\n        " +
		strings.ReplaceAll(strings.TrimSpace(string(key)), "\n", "\n        ") + "\n"
	res, err := FromClusterImagePolicy([]byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, res.YAML)
	}
	pol := loadImported(t, res)
	img, _ := policy.ParseImage("docker.io/myorg/app:v1")
	r := pol.Match(img, "default")
	if r == nil || r.Mode != policy.ModeWarn || r.Signatures == nil || len(r.Signatures.Authorities) != 1 {
		t.Errorf("rule %+v", r)
	}
	for _, bad := range []string{"kind: Pod\napiVersion: v1\n", "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata: {name: x}\nspec: {images: [{glob: a}], unknown: 1}\n"} {
		if _, err := FromClusterImagePolicy([]byte(bad)); err == nil || errors.Is(err, ErrIncomplete) {
			t.Errorf("%q: %v, want a parse error", bad, err)
		}
	}
}

func FuzzFromClusterImagePolicy(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "clusterimagepolicy-examples.yaml")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := FromClusterImagePolicy(b)
		if err == nil && res == nil {
			t.Fatal("nil result without error")
		}
	})
}
