package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/node/verifier"
	"github.com/sealgate/sealgate/tpm/tpmtest"
)

// TestAttest: a daemon takes a sealed trust store on swtpm (and measures
// it); `sealgate attest` quotes it; `sealgate attest verify` and
// tpm2_checkquote (with the PCR file of `attest expected-pcr`) accept the
// quote for that trust store's digest and refuse it for another digest,
// with a stale nonce and with another attestation key. After a re-seal the
// daemon takes live, a new quote verifies for the new digest and no longer
// for the old.
func TestAttest(t *testing.T) {
	checkquote := testenv.RequireTool(t, "tpm2_checkquote")
	sw := tpmtest.StartSwtpm(t)
	dir := filepath.Join(t.TempDir(), "trust")
	state := t.TempDir()
	if code, _, stderr := runMain("trust", "init", dir); code != exitOK {
		t.Fatal(stderr)
	}
	seal := func() string {
		t.Helper()
		if code, stdout, stderr := runMain("trust", "seal", "--trust-dir", dir, "--tpm", sw.Spec, "--gate-socket", ""); code != exitOK {
			t.Fatalf("seal: %s %s", stdout, stderr)
		}
		code, stdout, stderr := runMain("trust", "status", "--trust-dir", dir, "--tpm", sw.Spec, "--state-dir", state, "--output", "json")
		if code != exitOK {
			t.Fatalf("status: %s %s", stdout, stderr)
		}
		i := strings.Index(stdout, `"digest": "`)
		return stdout[i+len(`"digest": "`) : i+len(`"digest": "`)+71]
	}
	first := seal()
	n, err := node.Open(node.Config{Local: verifier.Local, TrustDir: dir, TPM: sw.Spec, StateDir: state, HostsDir: t.TempDir(), BundleStore: "", Access: node.Daemon,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	work := t.TempDir()
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	otherAK := filepath.Join(work, "other.pem")
	os.WriteFile(otherAK, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)

	attest := func(nonce string) (file, files string) {
		t.Helper()
		file, files = filepath.Join(work, nonce+".json"), filepath.Join(work, nonce)
		if code, stdout, stderr := runMain("attest", "--nonce", nonce, "--tpm", sw.Spec, "--state-dir", state, "-o", file, "--out-dir", files); code != exitOK {
			t.Fatalf("attest: exit %d %s %s", code, stdout, stderr)
		}
		return file, files
	}
	verify := func(file, ak, nonce, digest string) (int, string) {
		code, stdout, stderr := runMain("attest", "verify", file, "--ak", ak, "--nonce", nonce, "--trust-digest", digest)
		return code, stdout + stderr
	}
	checkq := func(file, files, ak, nonce, digest string) (bool, string) {
		t.Helper()
		pcrs := filepath.Join(t.TempDir(), "pcrs.bin")
		if code, stdout, stderr := runMain("attest", "expected-pcr", file, "--trust-digest", digest, "-o", pcrs); code != exitOK {
			t.Fatalf("expected-pcr: %s %s", stdout, stderr)
		}
		out, err := exec.Command(checkquote, "-u", ak, "-m", filepath.Join(files, "quote.msg"), "-s", filepath.Join(files, "quote.sig"),
			"-f", pcrs, "-l", "sha256:23", "-g", "sha256", "-q", nonce).CombinedOutput()
		return err == nil, string(out)
	}
	nonce := hex.EncodeToString([]byte("fleet challenge 1"))
	stale := hex.EncodeToString([]byte("fleet challenge 0"))
	file, files := attest(nonce)
	ak := filepath.Join(files, "ak.pem")
	another := "sha256:" + strings.Repeat("ab", 32)

	tests := []struct {
		name, ak, nonce, digest string
		ok                      bool
		why                     string
	}{
		{"the trust store taken", ak, nonce, first, true, "verified"},
		{"another trust store", ak, nonce, another, false, "enforces another trust store"},
		{"a stale nonce", ak, stale, first, false, "nonce differs"},
		{"another attestation key", otherAK, nonce, first, false, "not signed by the attestation key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := verify(file, tc.ak, tc.nonce, tc.digest)
			if (code == exitOK) != tc.ok || !strings.Contains(out, tc.why) {
				t.Errorf("attest verify: exit %d, want ok %v with %q:\n%s", code, tc.ok, tc.why, out)
			}
			if ok, out := checkq(file, files, tc.ak, tc.nonce, tc.digest); ok != tc.ok {
				t.Errorf("tpm2_checkquote: ok %v, want %v:\n%s", ok, tc.ok, out)
			}
		})
	}
	// The TPM2B_PUBLIC form of the key works with tpm2_checkquote too.
	if ok, out := checkq(file, files, filepath.Join(files, "ak.pub"), nonce, first); !ok {
		t.Errorf("tpm2_checkquote -u ak.pub: %s", out)
	}

	// A re-seal the daemon takes: the new trust store is what a new quote
	// shows; the old one no longer.
	writeFile(t, dir, "policy.yaml", readFileT(t, filepath.Join(dir, "policy.yaml"))+"# tightened\n")
	second := seal()
	if second == first {
		t.Fatal("the re-seal kept the digest")
	}
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	nonce2 := hex.EncodeToString([]byte("fleet challenge 2"))
	file2, files2 := attest(nonce2)
	if code, out := verify(file2, ak, nonce2, second); code != exitOK {
		t.Errorf("after the re-seal, for the new trust store: exit %d\n%s", code, out)
	}
	if code, out := verify(file2, ak, nonce2, first); code != exitFailed || !strings.Contains(out, "enforces another trust store") {
		t.Errorf("after the re-seal, for the old trust store: exit %d\n%s", code, out)
	}
	if ok, out := checkq(file2, files2, ak, nonce2, second); !ok {
		t.Errorf("tpm2_checkquote after the re-seal: %s", out)
	}
	if ok, _ := checkq(file2, files2, ak, nonce2, first); ok {
		t.Error("tpm2_checkquote accepted the old trust store after the re-seal")
	}
	a, err := readAttestation(file2)
	if err != nil || len(a.Log.Events) != 2 || a.Log.Events[1].Digest != second {
		t.Errorf("log after the re-seal: %+v %v", a, err)
	}
}

func readFileT(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
