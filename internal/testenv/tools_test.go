package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if got := modulePathOf(filepath.Join(root, "go.mod")); got != ModulePath {
		t.Fatalf("go.mod in %s declares %q", root, got)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testenv", "tools.go")); err != nil {
		t.Fatalf("root %s does not hold this package: %v", root, err)
	}
}

func TestModulePathOf(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{"module github.com/sealgate/sealgate\n\ngo 1.26\n", ModulePath},
		{"// comment\nmodule \"example.com/x\"\n", "example.com/x"},
		{"go 1.26\n", ""},
		{"", ""},
	} {
		p := filepath.Join(dir, "go.mod")
		if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := modulePathOf(p); got != tc.want {
			t.Errorf("modulePathOf(%q) = %q, want %q", tc.content, got, tc.want)
		}
	}
	if got := modulePathOf(filepath.Join(dir, "absent")); got != "" {
		t.Errorf("missing file gave %q", got)
	}
}

func TestToolSearchOrder(t *testing.T) {
	bin := t.TempDir()
	exe := filepath.Join(bin, "sealgate-fake-tool")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExe := filepath.Join(bin, "sh")
	if err := os.WriteFile(notExe, []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvToolsBin, bin)

	if got, err := Tool("sealgate-fake-tool"); err != nil || got != exe {
		t.Errorf("Tool from %s = %q, %v; want %q", EnvToolsBin, got, err, exe)
	}
	// A non-executable file is passed over for the next place (PATH).
	if got, err := Tool("sh"); err != nil || got == notExe {
		t.Errorf("Tool(sh) = %q, %v; want the one on PATH", got, err)
	}
	if _, err := Tool("sealgate-no-such-tool"); !errors.Is(err, ErrToolNotFound) {
		t.Errorf("missing tool: %v, want ErrToolNotFound", err)
	}
	for _, bad := range []string{"", "a/b"} {
		if _, err := Tool(bad); err == nil {
			t.Errorf("Tool(%q) succeeded", bad)
		}
	}
}

// recordTB catches Skipf and Fatalf so that RequireTool's decision can be
// checked without ending this test.
type recordTB struct {
	testing.TB
	skipped, failed string
}

type stop struct{}

func (r *recordTB) Helper() {}
func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	panic(stop{})
}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(stop{})
}

func requireTool(tb *recordTB, name string) (path string) {
	defer func() {
		if v := recover(); v != nil && v != (stop{}) {
			panic(v)
		}
	}()
	return RequireTool(tb, name)
}

func TestRequireTool(t *testing.T) {
	t.Setenv(EnvToolsBin, "")

	t.Setenv(EnvRequireTools, "")
	tb := &recordTB{TB: t}
	requireTool(tb, "sealgate-no-such-tool")
	if tb.failed != "" || !strings.Contains(tb.skipped, "sealgate-no-such-tool not installed; run make tools") {
		t.Errorf("without %s: skipped %q, failed %q; want a skip", EnvRequireTools, tb.skipped, tb.failed)
	}

	t.Setenv(EnvRequireTools, "1")
	tb = &recordTB{TB: t}
	requireTool(tb, "sealgate-no-such-tool")
	if tb.skipped != "" || !strings.Contains(tb.failed, "sealgate-no-such-tool") {
		t.Errorf("with %s=1: skipped %q, failed %q; want a failure", EnvRequireTools, tb.skipped, tb.failed)
	}

	tb = &recordTB{TB: t}
	if got := requireTool(tb, "sh"); got == "" || tb.failed != "" || tb.skipped != "" {
		t.Errorf("RequireTool(sh) = %q (skipped %q, failed %q)", got, tb.skipped, tb.failed)
	}
}

func TestBuildSealgate(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(root, "cmd", "sealgate", "*.go")); len(m) == 0 {
		t.Skip("cmd/sealgate has no sources yet")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	p := BuildSealgate(t)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("%s: mode %v, want an executable", p, fi.Mode())
	}
	if again := BuildSealgate(t); again != p {
		t.Fatalf("second call returned %s, want %s", again, p)
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	old, fresh, other := filepath.Join(dir, "sealgate-1.tmp"), filepath.Join(dir, "sealgate-2.tmp"), filepath.Join(dir, "keep-3.tmp")
	for _, p := range []string{old, fresh, other} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * time.Hour)
	for _, p := range []string{old, other} {
		if err := os.Chtimes(p, long, long); err != nil {
			t.Fatal(err)
		}
	}
	removeStale(dir, "sealgate-*.tmp", time.Hour)
	for p, want := range map[string]bool{old: false, fresh: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists=%v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}
