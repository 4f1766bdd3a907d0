package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real Sigstore bundles and trusted roots that ship with sigstore-go
// (copied, with their NOTICE, beside the verifier's tests).
var sgData = filepath.Join("..", "..", "plugin", "verify", "testdata", "sigstore-go")

const (
	sigstoreJSWorkflow = "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"
	githubIssuer       = "https://token.actions.githubusercontent.com"
	provenanceDigest   = "sha512:76176ffa33808b54602c7c35de5c6e9a4deb96066dba6533f50ac234f4f1f4c6b3527515dc17c06fbe2860030f410eee69ea20079bd3a2c6f3dcf3b329b10751"
)

// TestVerifyBundleConformance drives verify-bundle with the Sigstore
// conformance client protocol's arguments, on real public-good bundles,
// offline against the trusted roots that ship beside them.
func TestVerifyBundleConformance(t *testing.T) {
	data := func(name string) string { return filepath.Join(sgData, name) }
	blob := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(blob, []byte("test content"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"npm provenance by digest", []string{"--bundle", data("bundle-provenance.json"), "--certificate-identity", sigstoreJSWorkflow,
			"--certificate-oidc-issuer", githubIssuer, "--trusted-root", data("public-good.json"), provenanceDigest}, exitOK, "is valid"},
		{"email identity, DSSE", []string{"--bundle", data("dsse.sigstore.json"), "--certificate-identity", "brian@dehamer.com",
			"--certificate-oidc-issuer", "https://github.com/login/oauth", "--trusted-root", data("public-good.json"),
			"sha512:bbfd372fc9beeb777fe35d05bb10c0c70a9733d366a75fed7dd18866c7391de3ee7e88ba74dd47abf3e15c845e547fcf0e5c3da80854c751554224d3a6d4e55f"}, exitOK, "is valid"},
		{"key and TSA, artifact file", []string{"--bundle", data("public-key-validity.sigstore.json"), "--key", data("public-key-validity.pem"),
			"--trusted-root", data("public-key-validity.json"), blob}, exitOK, "is valid"},
		{"wrong identity", []string{"--bundle", data("bundle-provenance.json"), "--certificate-identity", "https://github.com/evil/x/.github/workflows/a.yml@refs/heads/main",
			"--certificate-oidc-issuer", githubIssuer, "--trusted-root", data("public-good.json"), provenanceDigest}, exitDenied, "not valid"},
		{"wrong issuer", []string{"--bundle", data("bundle-provenance.json"), "--certificate-identity", sigstoreJSWorkflow,
			"--certificate-oidc-issuer", "https://accounts.google.com", "--trusted-root", data("public-good.json"), provenanceDigest}, exitDenied, "not valid"},
		{"another root", []string{"--bundle", data("bundle-provenance.json"), "--certificate-identity", sigstoreJSWorkflow,
			"--certificate-oidc-issuer", githubIssuer, "--trusted-root", data("scaffolding.json"), provenanceDigest}, exitDenied, "not valid"},
		{"another artifact", []string{"--bundle", data("public-key-validity.sigstore.json"), "--key", data("public-key-validity.pem"),
			"--trusted-root", data("public-key-validity.json"), data("NOTICE")}, exitDenied, "not valid"},
		{"keyless without root", []string{"--bundle", data("bundle-provenance.json"), "--certificate-identity", sigstoreJSWorkflow,
			"--certificate-oidc-issuer", githubIssuer, provenanceDigest}, exitUsage, ""},
		{"identity without issuer", []string{"--bundle", data("bundle-provenance.json"), "--certificate-identity", sigstoreJSWorkflow,
			"--trusted-root", data("public-good.json"), provenanceDigest}, exitUsage, ""},
		{"no bundle", []string{"--key", data("public-key-validity.pem"), blob}, exitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(append([]string{"verify-bundle"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.out) {
				t.Errorf("stdout %q, want %q", stdout, tt.out)
			}
		})
	}
}

func TestVerifyBundleJSON(t *testing.T) {
	data := func(name string) string { return filepath.Join(sgData, name) }
	code, stdout, _ := runMain("verify-bundle", "--output", "json", "--bundle", data("bundle-provenance.json"),
		"--certificate-identity", sigstoreJSWorkflow, "--certificate-oidc-issuer", githubIssuer,
		"--trusted-root", data("public-good.json"), provenanceDigest)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stdout)
	}
	var got struct {
		Valid     bool `json:"valid"`
		Satisfied struct {
			Issuer   string `json:"issuer"`
			Subject  string `json:"subject"`
			SignedAt string `json:"signedAt"`
		} `json:"satisfiedBy"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Valid || got.Satisfied.Issuer != githubIssuer || got.Satisfied.Subject != sigstoreJSWorkflow || !strings.HasPrefix(got.Satisfied.SignedAt, "2023-04-18") {
		t.Errorf("got %s", stdout)
	}
}
