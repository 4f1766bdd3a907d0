package source

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// cosignPath finds the real cosign CLI, or skips (fails with
// SEALGATE_REQUIRE_TOOLS=1).
func cosignPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("cosign")
	if err != nil {
		p = "/tmp/tools/bin/cosign"
		if _, serr := os.Stat(p); serr != nil {
			if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
				t.Fatalf("cosign not found on PATH or in /tmp/tools/bin and SEALGATE_REQUIRE_TOOLS=1")
			}
			t.Skip("cosign not found on PATH or in /tmp/tools/bin; set SEALGATE_REQUIRE_TOOLS=1 to make this a failure")
		}
	}
	return p
}

// TestCosignSigned reads what the real cosign CLI writes: sign an image on
// a 127.0.0.1 registry with a key, offline, and check that the signature
// comes back and verifies with cosign's public key.
func TestCosignSigned(t *testing.T) {
	cosign := cosignPath(t)
	reg := newTestRegistry(t)
	image := pushImage(t, reg.host, reg.host, "signed/app")

	dir := t.TempDir()
	env := append(os.Environ(), "COSIGN_PASSWORD=", "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"))
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cosign %v: %v\n%s", args, err, out)
		}
	}
	run("generate-key-pair")
	run("sign", "--key", "cosign.key", "--tlog-upload=false", "--yes", "--allow-http-registry", image.String())

	got, err := newTestSource(t).Signatures(context.Background(), image)
	if err != nil {
		t.Fatalf("Signatures: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d signatures, want 1", len(got))
	}
	sig := got[0]

	var payload struct {
		Critical struct {
			Image struct {
				Digest string `json:"docker-manifest-digest"`
			} `json:"image"`
		} `json:"critical"`
	}
	if err := json.Unmarshal(sig.Payload, &payload); err != nil {
		t.Fatalf("payload: %v\n%s", err, sig.Payload)
	}
	if payload.Critical.Image.Digest != image.DigestStr() {
		t.Errorf("payload signs %s, want %s", payload.Critical.Image.Digest, image.DigestStr())
	}

	pubPEM, err := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pubPEM)
	if block == nil {
		t.Fatal("cosign.pub is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(sig.Payload)
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], sig.Signature) {
		t.Error("cosign's signature does not verify over the payload with cosign.pub")
	}
	if sig.Attached != image.DigestStr() || len(sig.Certificate) != 0 || len(sig.RekorBundle) != 0 {
		t.Errorf("unexpected fields: attached %q, certificate %d bytes, bundle %d bytes",
			sig.Attached, len(sig.Certificate), len(sig.RekorBundle))
	}

	// A signature with another key is appended to the same tag (cosign
	// skips re-signing with a key that already signed).
	run("generate-key-pair", "--output-key-prefix", "other")
	run("sign", "--key", "other.key", "--tlog-upload=false", "--yes", "--allow-http-registry", image.String())
	got, err = newTestSource(t).Signatures(context.Background(), image)
	if err != nil || len(got) != 2 {
		t.Fatalf("after a second signing: %d signatures, %v", len(got), err)
	}
	if bytes.Equal(got[0].Signature, got[1].Signature) {
		t.Error("two signings gave the same signature bytes")
	}
}
