package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sealgate/sealgate/plugin/trust"
)

// TestStateCountsTPMOperations: the daemon's TPM operations (swtpm) are
// counted by operation for the metrics endpoint, failures apart, and the
// verdict store's load is reported by reason.
func TestStateCountsTPMOperations(t *testing.T) {
	f := sealedStore(t, 3)
	f.Access = Daemon
	n, err := Open(local(f))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	s := n.state(nil)
	for _, op := range []string{"open", "unseal", "read_counter", "read_clock"} { // sealed without a measurement PCR
		if c := s.TPMOperations[op]; c.Total < 1 || c.Errors != 0 {
			t.Errorf("%s: %+v, want at least one, no error (all: %+v)", op, c, s.TPMOperations)
		}
	}
	if len(s.CacheRejected) != 4 || s.CacheRejected["bad-mac"] != 0 {
		t.Errorf("rejected records %+v", s.CacheRejected)
	}
	// The sealed policy changed without a re-seal: the reload is refused
	// and nothing fails in the TPM; the count of unseals goes on.
	unseals := s.TPMOperations["unseal"].Total
	pol := filepath.Join(f.TrustDir, trust.PolicyName)
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pol, append(b, "# edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(); err == nil {
		t.Fatal("an unsealed change was taken")
	}
	if got := n.state(nil).TPMOperations["unseal"].Total; got != unseals+1 {
		t.Errorf("unseals %d after a reload, want %d", got, unseals+1)
	}
	// The TPM gone: the failure to open is counted.
	f2 := f
	f2.TPM = "swtpm:127.0.0.1:1"
	n.cfg.TPM = f2.TPM
	_ = n.Reload()
	if c := n.state(nil).TPMOperations["open"]; c.Errors != 1 {
		t.Errorf("open with no TPM there: %+v, want one error", c)
	}
}
