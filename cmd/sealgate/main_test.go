package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/internal/testenv"
)

func runMain(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := dispatch(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyPolicyErrorNamesLine(t *testing.T) {
	dir := t.TempDir()
	pol := writeFile(t, dir, "policy.yaml", "mode: enforce\ndefault: deny\nrules:\n  - name: x\n    images: [\"a/*\"]\n    acton: allow\n")
	code, _, stderr := runMain("verify", "--policy", pol, "docker.io/library/a@sha256:"+strings.Repeat("a", 64))
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
	}
	if !strings.Contains(stderr, "policy.yaml:6") || !strings.Contains(stderr, "acton") {
		t.Errorf("stderr %q does not name the file, line 6 and the key", stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Usage:"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"verify without image", []string{"verify"}, "give at least one IMAGE"},
		{"--digest with two images", []string{"verify", "a.io/x", "a.io/y", "--digest", "sha256:" + strings.Repeat("a", 64)}, "--digest pins the digest of one IMAGE"},
		{"bad output", []string{"verify", "--output", "yaml", "nginx@sha256:" + strings.Repeat("a", 64)}, "--output"},
		{"run with bad log level", []string{"run", "--log-level", "loud"}, "--log-level"},
		{"malformed digest after @", []string{"verify", "--policy", "/dev/null", "a.io/x@sha256:zz"}, "not an image reference"},
		{"malformed --digest", []string{"verify", "--policy", "/dev/null", "a.io/x", "--digest", "sha256:12"}, "--digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runMain(tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want %q", stderr, tt.want)
			}
		})
	}
}

// TestHelpAndVersion: help asked for is output (stdout, exit 0); help as
// the answer to a mistake goes to stderr (exit 2); --version and version
// print the version, the commit and the Go version.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"verify", "--help"}, {"trust", "seal", "-h"}, {"run", "-help"}} {
		code, stdout, stderr := runMain(args...)
		if code != exitOK || !strings.Contains(stdout, "Usage:") || stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want the help on stdout", args, code, stdout, stderr)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, stdout, _ := runMain(args...)
		if code != exitOK || !strings.HasPrefix(stdout, "sealgate ") || !strings.Contains(stdout, "commit ") || !strings.Contains(stdout, "go1.") {
			t.Errorf("%v: exit %d, %q", args, code, stdout)
		}
	}
}

// TestVerifyExitCodesAndJSON runs `sealgate verify` against a registry on
// 127.0.0.1 holding an image signed by the real cosign and one unsigned.
func TestVerifyExitCodesAndJSON(t *testing.T) {
	reg, pub, signed, unsigned := signedFixture(t)
	dir := t.TempDir()
	pol := writeFile(t, dir, "policy.yaml", "mode: enforce\ndefault: deny\nrules:\n  - name: app\n    images: [\""+reg.Addr+"/app/**\"]\n    signatures:\n      authorities: [{key: "+pub+"}]\n")
	hosts := filepath.Join(dir, "certs.d")

	tests := []struct {
		image   string
		code    int
		allowed bool
		source  string
	}{
		{signed.String(), exitOK, true, "verified"},
		{unsigned.String(), exitDenied, false, "verified"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runMain("verify", tt.image, "--policy", pol, "--registry-hosts-dir", hosts, "--output", "json")
		if code != tt.code {
			t.Fatalf("%s: exit %d, want %d; stdout %s stderr %s", tt.image, code, tt.code, stdout, stderr)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, stdout)
		}
		for _, k := range []string{"image", "digest", "allowed", "rule", "mode", "reasons", "source"} {
			if _, ok := got[k]; !ok {
				t.Errorf("JSON lacks %q: %s", k, stdout)
			}
		}
		if got["allowed"] != tt.allowed || got["source"] != tt.source || got["rule"] != "app" {
			t.Errorf("%s: got %s", tt.image, stdout)
		}
		if reasons, _ := got["reasons"].([]any); len(reasons) == 0 {
			t.Errorf("%s: no reasons: %s", tt.image, stdout)
		}
		// An allowed image says which authority satisfied which requirement.
		by, _ := got["satisfiedBy"].([]any)
		if tt.allowed {
			if len(by) != 1 {
				t.Fatalf("%s: satisfiedBy %v", tt.image, got["satisfiedBy"])
			}
			s := by[0].(map[string]any)
			if s["requirement"] != "signatures" || s["authority"] != "key "+pub || !strings.HasPrefix(s["keyID"].(string), "sha256:") || s["digest"] != signed.DigestStr() {
				t.Errorf("%s: satisfiedBy %v", tt.image, s)
			}
		} else if len(by) != 0 {
			t.Errorf("%s: denied image reports satisfiedBy %v", tt.image, by)
		}
	}
	code, stdout, _ := runMain("verify", unsigned.String(), "--policy", pol, "--registry-hosts-dir", hosts)
	if code != exitDenied || !strings.Contains(stdout, "sealgate: denied "+unsigned.String()) {
		t.Errorf("text output: exit %d %q", code, stdout)
	}
}

// signedFixture is a registry on 127.0.0.1 with app/signed:v1, signed by
// the real cosign with a fresh key (pub is its public key file), and
// app/unsigned:v1.
func signedFixture(t *testing.T) (*testenv.Registry, string, name.Digest, name.Digest) {
	t.Helper()
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{})
	cs := testenv.NewCosign(t)
	key, pub, err := cs.GenerateKeyPair("release")
	if err != nil {
		t.Fatal(err)
	}
	signedImg, err := testenv.RandomImage(1)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := reg.Push(signedImg, "app/signed:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Sign(key, signed.String()); err != nil {
		t.Fatal(err)
	}
	unsignedImg, err := testenv.RandomImage(2)
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := reg.Push(unsignedImg, "app/unsigned:v1")
	if err != nil {
		t.Fatal(err)
	}
	return reg, pub, signed, unsigned
}

// TestVerifyByTag: in the shell a tag is resolved at the registry and the
// digest said; several images are decided in one call (exit 1 when any is
// denied, JSON an array naming the tag each digest came from); a tag moved
// to an unsigned image after signing is denied.
func TestVerifyByTag(t *testing.T) {
	reg, pub, signed, unsigned := signedFixture(t)
	dir := t.TempDir()
	pol := writeFile(t, dir, "policy.yaml", "mode: enforce\ndefault: deny\nrules:\n  - name: app\n    images: [\""+reg.Addr+"/app/**\"]\n    signatures:\n      authorities: [{key: "+pub+"}]\n")
	hosts := filepath.Join(dir, "certs.d")
	common := []string{"--policy", pol, "--registry-hosts-dir", hosts}

	code, stdout, stderr := runMain(append([]string{"verify", reg.Ref("app/signed:v1")}, common...)...)
	if code != exitOK || !strings.Contains(stdout, "resolved "+reg.Ref("app/signed:v1")+" to "+signed.DigestStr()) || !strings.Contains(stdout, "sealgate: allowed") ||
		!strings.Contains(stdout, "signatures: satisfied by key "+pub+" (key sha256:") {
		t.Fatalf("signed tag: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runMain(append([]string{"verify", reg.Ref("app/signed:v1"), reg.Ref("app/unsigned:v1"), "--output", "json"}, common...)...)
	if code != exitDenied {
		t.Fatalf("signed and unsigned tags: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || len(got) != 2 {
		t.Fatalf("JSON for two images: %v\n%s", err, stdout)
	}
	if got[0]["resolvedTag"] != reg.Ref("app/signed:v1") || got[0]["digest"] != signed.DigestStr() || got[0]["allowed"] != true ||
		got[1]["resolvedTag"] != reg.Ref("app/unsigned:v1") || got[1]["digest"] != unsigned.DigestStr() || got[1]["allowed"] != false {
		t.Errorf("JSON: %s", stdout)
	}
	// The tag moved to the unsigned image after signing.
	if err := reg.CopyManifest(unsigned.String(), reg.Ref("app/signed:v1")); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runMain(append([]string{"verify", reg.Ref("app/signed:v1")}, common...)...)
	if code != exitDenied || !strings.Contains(stdout, unsigned.DigestStr()) {
		t.Errorf("moved tag: exit %d\n%s", code, stdout)
	}
	// --digest pins: no registry lookup of the tag.
	code, stdout, _ = runMain(append([]string{"verify", reg.Ref("app/signed:v1"), "--digest", signed.DigestStr()}, common...)...)
	if code != exitOK || strings.Contains(stdout, "resolved") {
		t.Errorf("--digest: exit %d\n%s", code, stdout)
	}
}

// TestAdhocAgreesWithCosign: without a policy, cosign's flags decide as
// cosign verify does on the same images (real cosign, same key).
func TestAdhocAgreesWithCosign(t *testing.T) {
	reg, pub, signed, unsigned := signedFixture(t)
	cs := testenv.NewCosign(t)
	hosts := filepath.Join(t.TempDir(), "certs.d")
	for _, tc := range []struct {
		img name.Digest
		ok  bool
	}{{signed, true}, {unsigned, false}} {
		img := tc.img
		_, cosignErr := cs.Run("verify", "--key", pub, "--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry", img.String())
		code, stdout, stderr := runMain("verify", img.String(), "--key", pub, "--insecure-ignore-tlog", "--registry-hosts-dir", hosts)
		if (cosignErr == nil) != tc.ok || (code == exitOK) != tc.ok || code == exitUsage {
			t.Errorf("%s: cosign verify err %v; sealgate exit %d\n%s%s", img, cosignErr, code, stdout, stderr)
		}
	}
	if cosign, _ := cs.Run("verify", "--key", pub, "--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry", signed.String()); len(cosign) == 0 {
		t.Error("cosign said nothing")
	}
	// By tag too, and the errors cosign would also refuse.
	if code, stdout, stderr := runMain("verify", reg.Ref("app/signed:v1"), "--key", pub, "--insecure-ignore-tlog", "--registry-hosts-dir", hosts); code != exitOK {
		t.Errorf("ad-hoc by tag: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, args := range [][]string{
		{"--key", pub},                  // no log entry possible without a root, as cosign refuses
		{"--certificate-identity", "x"}, // no issuer
		{"--key", pub, "--certificate-identity", "x", "--certificate-oidc-issuer", "y"},
		{"--key", pub, "--insecure-ignore-tlog", "--type", "nonsense"},
	} {
		if code, _, stderr := runMain(append([]string{"verify", signed.String(), "--registry-hosts-dir", hosts}, args...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, stderr)
		}
	}
}

// TestPolicyImportAgrees: a containers-policy.json for the registry, imported
// and checked, decides as the same policy written by hand; `policy check`
// says what a policy holds and refuses a broken one.
func TestPolicyImportAgrees(t *testing.T) {
	reg, pub, signed, unsigned := signedFixture(t)
	dir := t.TempDir()
	hosts := filepath.Join(dir, "certs.d")
	cp := writeFile(t, dir, "policy.json", `{"default":[{"type":"reject"}],"transports":{"docker":{"`+reg.Addr+`/app":[{"type":"sigstoreSigned","keyPath":"`+pub+`","signedIdentity":{"type":"matchRepository"}}]}}}`)
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(filepath.Join(store, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	imported := filepath.Join(store, "policy.yaml")
	code, stdout, stderr := runMain("policy", "import", "--from", "containers-policy", cp, "-o", imported)
	if code != exitOK || !strings.Contains(stderr, "copy "+pub+" into the trust store as keys/"+filepath.Base(pub)) {
		t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
	}
	b, _ := os.ReadFile(pub)
	writeFile(t, filepath.Join(store, "keys"), filepath.Base(pub), string(b))
	if code, stdout, _ := runMain("policy", "check", imported); code != exitOK || !strings.Contains(stdout, "valid: mode enforce, default deny, 1 rule, 1 file named") {
		t.Fatalf("policy check of the import: exit %d %s", code, stdout)
	}
	hand := writeFile(t, dir, "hand.yaml", "mode: enforce\ndefault: deny\nrules:\n  - name: app\n    images: [\""+reg.Addr+"/app:*\", \""+reg.Addr+"/app@*\", \""+reg.Addr+"/app/**\"]\n    signatures:\n      authorities: [{key: "+pub+"}]\n")
	for _, img := range []name.Digest{signed, unsigned} {
		a, _, _ := runMain("verify", img.String(), "--policy", imported, "--registry-hosts-dir", hosts)
		h, _, _ := runMain("verify", img.String(), "--policy", hand, "--registry-hosts-dir", hosts)
		if a != h || (img == signed) != (a == exitOK) {
			t.Errorf("%s: imported policy exit %d, hand-written %d", img, a, h)
		}
	}
	broken := writeFile(t, dir, "broken.yaml", "mode: enforce\ndefault: deny\nrules:\n  - name: x\n    images: [a.io/**]\n    signatures:\n      authorities: [{key: missing.pub}]\n")
	if code, stdout, _ := runMain("policy", "check", broken); code != exitFailed || !strings.Contains(stdout, "broken.yaml:7") {
		t.Errorf("policy check of a broken policy: exit %d %s", code, stdout)
	}
}

// TestClusterImagePolicyImportAgrees: a key-based ClusterImagePolicy for
// the registry, imported (its inline key written beside the policy),
// decides as the same policy written by hand.
func TestClusterImagePolicyImportAgrees(t *testing.T) {
	reg, pub, signed, unsigned := signedFixture(t)
	dir := t.TempDir()
	hosts := filepath.Join(dir, "certs.d")
	key, _ := os.ReadFile(pub)
	cip := writeFile(t, dir, "cip.yaml", "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: app\nspec:\n  images:\n  - glob: \""+reg.Addr+"/app/**\"\n  authorities:\n  - key:\n      data: |\n        "+strings.ReplaceAll(strings.TrimSpace(string(key)), "\n", "\n        ")+"\n")
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	imported := filepath.Join(store, "policy.yaml")
	if code, stdout, stderr := runMain("policy", "import", "--from", "clusterimagepolicy", cip, "-o", imported); code != exitOK || !strings.Contains(stderr, "wrote "+filepath.Join(store, "keys", "app-0.pub")) {
		t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
	}
	hand := writeFile(t, dir, "hand.yaml", "mode: enforce\ndefault: allow\nrules:\n  - name: app\n    images: [\""+reg.Addr+"/app/**\"]\n    signatures:\n      signedIdentity: any\n      authorities: [{key: "+pub+"}]\n")
	for _, img := range []name.Digest{signed, unsigned} {
		a, _, _ := runMain("verify", img.String(), "--policy", imported, "--registry-hosts-dir", hosts)
		h, _, _ := runMain("verify", img.String(), "--policy", hand, "--registry-hosts-dir", hosts)
		if a != h || (img == signed) != (a == exitOK) {
			t.Errorf("%s: imported policy exit %d, hand-written %d", img, a, h)
		}
	}
}
