package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

// TestCosignFixtures verifies signatures that the real cosign v2.6.5 made
// (`cosign sign-blob --key K --tlog-upload=false testdata/cosign/payload.json`),
// so that the cross-check holds even where cosign is not installed. The
// expected key IDs were computed with
// `openssl pkey -pubin -in K.pub -outform DER | sha256sum`.
func TestCosignFixtures(t *testing.T) {
	payload := readFile(t, filepath.Join("testdata", "cosign", "payload.json"))
	subject := Subject{Repository: "127.0.0.1:5000/app", Digest: zeroDigest}
	tests := []struct {
		key, keyID string
	}{
		{"p256", "sha256:9538ae375ad52d72d26321066dd7c0ae080f3d381af9abee5b8ef2f2b5809b50"},
		// cosign v2 signs P-384 with SHA-384 (and its own verify-blob,
		// which defaults to SHA-256, rejects this signature).
		{"p384", "sha256:b2c922af7d959622510fb139c8f5082fd55edee5ae38db9aaf734f48d8369fac"},
		{"rsa", "sha256:888ad11a7fd21e7f0837eb411c72ad6c19e1b84753eebc2db63854ec4ca50f2c"},
	}
	v := newVerifier(t)
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			auth := pemAuthority(t, filepath.Join("testdata", "cosign", tt.key+".pub"))
			sig := artifact.Signature{Payload: payload, Signature: decodeSig(t, readFile(t, filepath.Join("testdata", "cosign", tt.key+".sig"))), Origin: "fixture"}
			got, err := v.VerifySignature(subject, sig, auth, policy.MatchRepository)
			if err != nil {
				t.Fatalf("VerifySignature: %v", err)
			}
			if got.KeyID != tt.keyID || got.Digest != zeroDigest {
				t.Errorf("Satisfier = %+v, want key ID %s and digest %s", got, tt.keyID, zeroDigest)
			}
			sig.Payload = bytes.Replace(payload, []byte("/app"), []byte("/apq"), 1)
			if _, err := v.VerifySignature(subject, sig, auth, policy.MatchAny); !errors.Is(err, ErrBadSignature) {
				t.Errorf("tampered payload: err = %v, want ErrBadSignature", err)
			}
		})
	}
}

// TestCosignCLI signs simple-signing payloads with the cosign on PATH, with
// a key it generates and with imported P-384 and RSA keys, and checks that
// the verifier accepts exactly what cosign produced.
func TestCosignCLI(t *testing.T) {
	cosign, err := exec.LookPath("cosign")
	if err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("cosign not on PATH and SEALGATE_REQUIRE_TOOLS=1: %v", err)
		}
		t.Skipf("cosign not on PATH (set PATH=/tmp/tools/bin:$PATH; SEALGATE_REQUIRE_TOOLS=1 makes this fatal): %v", err)
	}
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=sealgate-test", "HOME="+dir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.Bytes()
	}

	run("generate-key-pair")
	ks := keys(t)
	for _, kind := range []string{"p384", "rsa2048"} {
		der, err := x509.MarshalPKCS8PrivateKey(ks[kind].priv)
		if err != nil {
			t.Fatal(err)
		}
		pemPath := filepath.Join(dir, kind+".pem")
		if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		run("import-key-pair", "--key", pemPath, "--output-key-prefix", kind)
	}
	// Ed25519 is covered by the in-process signers only: cosign v2.6.5
	// `sign-blob --tlog-upload=false` panics on Ed25519 keys.

	subject := Subject{Repository: testRepo, Digest: testDigest}
	payload := cosignPayload(t, testRepo+":v1", testDigest)
	payloadPath := filepath.Join(dir, "payload.json")
	if err := os.WriteFile(payloadPath, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t)
	for _, prefix := range []string{"cosign", "p384", "rsa2048"} {
		t.Run(prefix, func(t *testing.T) {
			out := run("sign-blob", "--key", prefix+".key", "--tlog-upload=false", "--yes", payloadPath)
			auth := pemAuthority(t, filepath.Join(dir, prefix+".pub"))
			req := &policy.Signatures{Threshold: 1, Authorities: []*policy.Authority{auth}}
			sig := artifact.Signature{Payload: payload, Signature: decodeSig(t, out), Origin: "cosign sign-blob"}
			res := v.VerifySignatures(context.Background(), subject, []artifact.Signature{sig}, req)
			if !res.Satisfied || len(res.By) != 1 || res.By[0].KeyID != keyIDOf(t, auth.Key.PublicKey) {
				t.Fatalf("cosign's signature not accepted: %+v", res)
			}
			other := Subject{Repository: testRepo, Digest: siblingDigest}
			if res := v.VerifySignatures(context.Background(), other, []artifact.Signature{sig}, req); res.Satisfied {
				t.Fatalf("cosign's signature accepted for another digest: %+v", res)
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeSig(t *testing.T, b []byte) []byte {
	t.Helper()
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("decode signature %q: %v", b, err)
	}
	return sig
}

func pemAuthority(t *testing.T, path string) *policy.Authority {
	t.Helper()
	raw := readFile(t, path)
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &policy.Authority{Name: "key " + filepath.Base(path), Key: &policy.KeyAuthority{Path: filepath.Base(path), File: path, PEM: raw, PublicKey: pub}}
}
