//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyOnSealedNode: `sealgate verify` on a node whose trust store is
// sealed to its TPM decides as the running daemon does: the same trust
// store checked against the TPM, the same persisted verdicts (read beside
// the daemon, which holds them), the same verdicts and sources. When the
// trust store no longer matches its seal, it refuses, naming the file.
func TestVerifyOnSealedNode(t *testing.T) {
	n := newSealedNode(t, time.Hour)
	n.start(t)
	if out, err := n.run(t, n.f.signedTag, "signed"); err != nil {
		t.Fatalf("daemon refused the signed image: %v\n%s", err, out)
	}
	verify := func(image string) (verdict, string, int) {
		t.Helper()
		out, code := sealgateCmd(t, "verify", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec, "--state-dir", n.stateDir,
			"--registry-hosts-dir", n.f.hostsDir, "--bundle-store", "", "--output", "json", image)
		var v verdict
		if code <= 1 {
			if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &v); err != nil {
				t.Fatalf("verify output: %v\n%s", err, out)
			}
		}
		return v, out, code
	}
	if v, out, code := verify(n.f.signed.String()); code != 0 || !v.Allowed || v.Source != "verified" || v.Rule != ruleApps {
		t.Errorf("signed: exit %d, %+v\n%s", code, v, out)
	}
	if v, out, code := verify(n.f.unsigned.String()); code != 1 || v.Allowed || !strings.Contains(strings.Join(v.Reasons, ";"), "no signatures found") {
		t.Errorf("unsigned: exit %d, %+v\n%s", code, v, out)
	}
	// The registry goes away: the daemon's persisted verdict serves, as it
	// would for the daemon.
	if err := n.f.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	if v, out, code := verify(n.f.signed.String()); code != 0 || v.Source != "offline-cache" {
		t.Errorf("signed, registry down: exit %d, %+v; want the daemon's verdict from the offline cache\n%s", code, v, out)
	}
	// A file the policy does not name changes nothing; the policy edited
	// after sealing: verify refuses, as the daemon would.
	writeFile(t, filepath.Join(n.trustDir, "keys", "added.pub"), "x")
	if _, out, code := verify(n.f.signed.String()); code != 0 {
		t.Errorf("a file the policy does not name stopped verify: exit %d\n%s", code, out)
	}
	pol := filepath.Join(n.trustDir, "policy.yaml")
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, pol, string(b)+"# edited\n")
	if _, out, code := verify(n.f.signed.String()); code != 2 || !strings.Contains(out, "policy.yaml was changed") {
		t.Errorf("changed trust store: exit %d, want 2 naming the file\n%s", code, out)
	}
}
