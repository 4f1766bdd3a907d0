package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/node/verifier"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/tpm"
	"github.com/sealgate/sealgate/tpm/tpmtest"
)

// sealedNode seals a starter trust store to a fresh swtpm and persists n
// verdicts under its key, through the node as the daemon opens it.
func sealedNode(t *testing.T, n int) node.Config {
	t.Helper()
	sw := tpmtest.StartSwtpm(t)
	dir := filepath.Join(t.TempDir(), "trust")
	if err := trust.Init(dir); err != nil {
		t.Fatal(err)
	}
	tp, err := tpm.Open(sw.Spec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = trust.Seal(dir, tp, trust.SealOptions{MeasurePCR: trust.NoMeasurement})
	tp.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Config{Local: verifier.Local, TrustDir: dir, TPM: sw.Spec, StateDir: t.TempDir(), HostsDir: t.TempDir(), Access: node.Maintain}
	nd, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		nd.Verdicts().Put(cache.Key{Digest: fmt.Sprintf("sha256:%064x", i), Repository: "registry.example.com/app", Rule: "app", PolicyDigest: "sha256:p"},
			cache.Verdict{Allowed: true, Reasons: []string{"verified by key keys/release.pub"}, VerifiedAt: time.Now(), Clock: time.Millisecond})
	}
	nd.Close()
	return cfg
}

func TestCacheCommand(t *testing.T) {
	f := sealedNode(t, 3)
	args := []string{"--trust-dir", f.TrustDir, "--tpm", f.TPM, "--state-dir", f.StateDir}
	code, stdout, stderr := runMain(append([]string{"cache", "list"}, args...)...)
	if code != exitOK || !strings.Contains(stdout, "3 verdicts") || !strings.Contains(stdout, "allow registry.example.com/app@sha256:") {
		t.Fatalf("list: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr = runMain(append([]string{"cache", "purge"}, args...)...); code != exitOK {
		t.Fatalf("purge: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stdout, _ = runMain(append([]string{"cache", "list"}, args...)...); !strings.Contains(stdout, "0 verdicts") {
		t.Errorf("after purge: %s", stdout)
	}
	if code, _, _ := runMain("cache"); code != exitUsage {
		t.Errorf("no subcommand: exit %d", code)
	}
}
