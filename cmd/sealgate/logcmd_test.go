package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/plugin/decisionlog"
)

// TestLogVerify: `sealgate log verify` passes a whole log (its rotated
// files found from --state-dir), and names the line where an edited one
// breaks, with exit 1.
func TestLogVerify(t *testing.T) {
	state := t.TempDir()
	path := filepath.Join(state, "decisions.log")
	w, err := decisionlog.Open(path, decisionlog.WithRotation(4096, 4))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		w.Add(decisionlog.Entry{Image: "r.io/app:" + strings.Repeat("x", i), Rule: "app", Mode: "enforce", Verdict: "allow", Source: "cache",
			Reasons: []string{"verified by key keys/release.pub", strings.Repeat("material from somewhere; ", 4)}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if files := decisionlog.Files(path); len(files) < 2 {
		t.Fatalf("no rotation: %v", files)
	}
	if code, stdout, stderr := runMain("log", "verify", "--state-dir", state); code != exitOK || !strings.Contains(stdout, "30 lines in") || !strings.Contains(stdout, "ending at line 30") {
		t.Fatalf("whole log: exit %d\n%s%s", code, stdout, stderr)
	}
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), `"allow"`, `"deny"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runMain("log", "verify", path)
	if code != exitFailed || !strings.Contains(stdout, "decisions.log:") {
		t.Fatalf("edited log: exit %d, %q", code, stdout)
	}
	if code, _, _ := runMain("log", "verify", "--state-dir", t.TempDir()); code != exitUsage {
		t.Errorf("no log: exit %d, want 2", code)
	}
}
