package policyimport

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/plugin/policy"
)

// writeStore puts the imported policy in a folder with the keys it names
// (any valid public key stands in for each) and parses it as the daemon
// would.
func writeStore(t *testing.T, res *Result) *policy.Policy {
	t.Helper()
	dir := t.TempDir()
	key, err := os.ReadFile(filepath.Join("..", "policy", "testdata", "keys", "ecdsa-p256.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range res.Keys {
		if err := os.WriteFile(filepath.Join(dir, "keys", filepath.Base(k)), key, 0o644); err != nil {
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

// TestContainersPolicyExample: the example of containers-policy.json(5)
// (transcribed from the man page), imported: what maps is written, what
// does not (GPG signedBy, Fulcio's CA as PEM) is said and makes the import
// incomplete, and the most specific scope decides, as in containers/image.
func TestContainersPolicyExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "containers-policy-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := FromContainersPolicy(data)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v, want ErrIncomplete (signedBy and Fulcio PEM do not map)", err)
	}
	text := string(res.YAML)
	for _, want := range []string{"signedBy (GPG simple signing) has no sealgate equivalent", "trusted_root.json", `transport "docker-daemon"`, "default: allow"} {
		if !strings.Contains(text, want) {
			t.Errorf("the imported policy lacks %q:\n%s", want, text)
		}
	}
	// The keyless scope keeps its identity but needs a trusted root: it
	// does not parse until one is named.
	text = strings.Replace(text, "default: allow\n", "default: allow\ntrustedRoot: roots/trusted_root.json\n", 1)
	res.YAML = []byte(text)
	pol := writeStoreWithRoot(t, res)
	tests := []struct {
		image, rule string
		action      policy.Action
	}{
		{"docker.io/library/busybox:latest", "", policy.ActionAllow},
		{"registry.access.redhat.com/ubi9:latest", "", policy.ActionDeny},
		{"registry.redhat.io/redhat/redhat-operator-index:v4.14", "", policy.ActionAllow},
		{"private-repo.example.com/team/app:v1", "", policy.ActionAllow},
		{"hostname:5000/myns/sigstore-signed-with-full-references:v1", "", policy.ActionVerify},
	}
	for _, tt := range tests {
		img, err := policy.ParseImage(tt.image)
		if err != nil {
			t.Fatal(err)
		}
		r := pol.Match(img, "default")
		if r == nil {
			t.Errorf("%s: no rule", tt.image)
			continue
		}
		if r.Action != tt.action {
			t.Errorf("%s: rule %s action %q, want %q", tt.image, r.Name, r.Action, tt.action)
		}
		if tt.action == policy.ActionVerify && (r.Signatures == nil || len(r.Signatures.Authorities) != 1) {
			t.Errorf("%s: rule %s without its key", tt.image, r.Name)
		}
	}
}

func writeStoreWithRoot(t *testing.T, res *Result) *policy.Policy {
	t.Helper()
	root, err := os.ReadFile(filepath.Join("..", "policy", "testdata", "roots", "trusted_root.json"))
	if err != nil {
		t.Skipf("no trusted root fixture: %v", err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "roots"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "roots", "trusted_root.json"), root, 0o644); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join("..", "policy", "testdata", "keys", "ecdsa-p256.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range res.Keys {
		if err := os.WriteFile(filepath.Join(dir, "keys", filepath.Base(k)), key, 0o644); err != nil {
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

// TestContainersPolicyComplete: a policy of key-signed scopes maps
// completely.
func TestContainersPolicyComplete(t *testing.T) {
	res, err := FromContainersPolicy([]byte(`{"default":[{"type":"reject"}],"transports":{"docker":{
		"registry.example.com/team":[{"type":"sigstoreSigned","keyPath":"/etc/pki/containers/team.pub","signedIdentity":{"type":"matchRepository"}}],
		"registry.example.com/team/special:v1":[{"type":"sigstoreSigned","keyPath":"/etc/pki/containers/special.pub","signedIdentity":{"type":"matchExact"}}],
		"*.mirror.example.com":[{"type":"sigstoreSigned","keyPath":"/etc/pki/containers/team.pub","signedIdentity":{"type":"remapIdentity","prefix":"eu.mirror.example.com/hub","signedPrefix":"docker.io/library"}}]}}}`))
	if err != nil {
		t.Fatalf("%v\n%s", err, res.YAML)
	}
	pol := writeStore(t, res)
	if pol.Default != policy.ActionDeny || len(pol.Rules) != 3 {
		t.Fatalf("policy %+v", pol)
	}
	img, _ := policy.ParseImage("registry.example.com/team/special:v1")
	if r := pol.Match(img, "default"); r == nil || r.Signatures.SignedIdentity != policy.MatchExact {
		t.Errorf("the tag scope is not the most specific: %+v", r)
	}
	img, _ = policy.ParseImage("registry.example.com/team/app:v1")
	if r := pol.Match(img, "default"); r == nil || r.Signatures.SignedIdentity != policy.MatchRepository {
		t.Errorf("namespace scope: %+v", r)
	}
	img, _ = policy.ParseImage("eu.mirror.example.com/hub/nginx:1")
	if r := pol.Match(img, "default"); r == nil || r.Signatures.Remap == nil || r.Signatures.Remap.SignedPrefix != "docker.io/library" {
		t.Errorf("wildcard scope with remapIdentity: %+v", r)
	}
	for _, bad := range []string{`{}`, `{"default":[{"type":"reject"}],"unknown":1}`, `{"default":[{"type":"reject","type":"insecureAcceptAnything"}]}`} {
		if _, err := FromContainersPolicy([]byte(bad)); err == nil || errors.Is(err, ErrIncomplete) {
			t.Errorf("%s: %v, want a parse error", bad, err)
		}
	}
}

func FuzzFromContainersPolicy(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "containers-policy-example.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"default":[{"type":"reject"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := FromContainersPolicy(b)
		if err == nil && res == nil {
			t.Fatal("nil result without error")
		}
	})
}
