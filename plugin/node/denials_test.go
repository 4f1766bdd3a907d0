package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/tpm"
)

// TestDenialRememberedUntilReseal: an unsigned image at a registry on
// 127.0.0.1 is denied after asking the registry; denied again within the
// window without a single request; and after a re-seal, which the daemon
// takes live, the registry is asked again.
func TestDenialRememberedUntilReseal(t *testing.T) {
	f, sw := sealedStoreOn(t, 1)
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: true})
	img, err := testenv.RandomImage(7)
	if err != nil {
		t.Fatal(err)
	}
	d, err := reg.Push(img, "app/unsigned:v1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.TrustDir, "keys", "release.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := "mode: enforce\ndefault: deny\nrules:\n  - name: app\n    images: [\"" + reg.Addr + "/**\"]\n    signatures:\n      authorities: [{key: keys/release.pub}]\n"
	if err := os.WriteFile(filepath.Join(f.TrustDir, trust.PolicyName), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	seal := func() {
		t.Helper()
		tp, err := tpm.Open(sw.Spec)
		if err != nil {
			t.Fatal(err)
		}
		defer tp.Close()
		if _, err := trust.Seal(f.TrustDir, tp, trust.SealOptions{MeasurePCR: trust.NoMeasurement}); err != nil {
			t.Fatal(err)
		}
	}
	seal()
	n, err := Open(local(f))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	req := decision.Request{Image: d.Context().String() + ":v1", Digest: d.DigestStr(), Namespace: "default"}
	decide := func(what string, wantRequests bool) {
		t.Helper()
		before := reg.Requests()
		got := (live{n}).Decide(context.Background(), req)
		asked := reg.Requests() - before
		if got.Allowed || !strings.Contains(strings.Join(got.Reasons, "; "), "no signatures found") {
			t.Fatalf("%s: %+v, want denied for want of signatures", what, got)
		}
		if (asked > 0) != wantRequests {
			t.Errorf("%s: %d registry requests, want any: %v", what, asked, wantRequests)
		}
	}
	decide("first decision", true)
	decide("again within the window", false)
	seal()
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	decide("after a re-seal", true)
	decide("again after the re-seal", false)
}
