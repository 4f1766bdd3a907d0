// Package testenv gives sealgate's tests the real components a node has — a
// registry on 127.0.0.1, runnable images, the cosign CLI, containerd with
// runc — so that tests exercise the real protocols instead of mocks.
//
// Functions return errors; the helpers that take a testing.TB register their
// own cleanup with t.Cleanup and stop the test with t.Fatal on error. External
// tools are found by Tool; a test that needs one calls RequireTool, which skips
// when the tool is missing unless SEALGATE_REQUIRE_TOOLS=1 (as `make test` and
// CI set it), so that a missing install fails CI instead of hiding.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ModulePath is the module whose root ModuleRoot looks for.
const ModulePath = "github.com/sealgate/sealgate"

// Environment variables that steer how tools are found.
const (
	// EnvToolsBin names a directory searched for tools before any other.
	EnvToolsBin = "SEALGATE_TOOLS_BIN"
	// EnvRequireTools, set to "1", turns a missing tool from a skip into a
	// failure.
	EnvRequireTools = "SEALGATE_REQUIRE_TOOLS"
)

// ErrToolNotFound is returned by Tool when a tool is in none of the places it
// looks; callers branch on it to skip rather than fail.
var ErrToolNotFound = errors.New("tool not found")

// Tool returns the path of an external tool, looking in $SEALGATE_TOOLS_BIN,
// then in <module root>/.tools/bin (where `make tools` installs the pinned
// versions), then on PATH. The pinned copies come first so that a test runs
// against the versions the project is tested with, not whatever the host has.
func Tool(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, os.PathSeparator) {
		return "", fmt.Errorf("tool %q: invalid name", name)
	}
	var dirs []string
	if d := os.Getenv(EnvToolsBin); d != "" {
		dirs = append(dirs, d)
	}
	if root, err := ModuleRoot(); err == nil {
		dirs = append(dirs, filepath.Join(root, ".tools", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("tool %s: %w (looked in %s and PATH)", name, ErrToolNotFound, strings.Join(dirs, ", "))
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("tool %s: %w", name, err)
	}
	return abs, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// RequireTool returns the path of a tool or ends the test: it skips when the
// tool is missing, and fails instead when SEALGATE_REQUIRE_TOOLS=1, so that a
// machine meant to have every tool cannot pass by skipping.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := Tool(name)
	if err == nil {
		return p
	}
	if os.Getenv(EnvRequireTools) == "1" {
		t.Fatalf("%s=1 but %s is not installed (run make tools): %v", EnvRequireTools, name, err)
	}
	t.Skipf("skipping: %s not installed; run make tools", name)
	return ""
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// ModuleRoot returns the directory holding sealgate's go.mod, found by walking
// up from the working directory (a test's working directory is its package's
// source directory).
func ModuleRoot() (string, error) {
	rootOnce.Do(func() { rootDir, rootErr = findModuleRoot() })
	return rootDir, rootErr
}

func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if modulePathOf(filepath.Join(dir, "go.mod")) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("module root: no go.mod for %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

// modulePathOf returns the module path declared in a go.mod file, or "".
func modulePathOf(gomod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// builds holds one build per command, made once per test binary.
var builds sync.Map // command name -> *build

type build struct {
	once sync.Once
	path string
	err  error
}

// buildTimeout bounds one `go build` of a sealgate binary.
const buildTimeout = 10 * time.Minute

// BuildSealgate builds ./cmd/sealgate once per test binary and returns the
// path of the binary, so that end-to-end tests run what operators run. The
// binary goes to <module root>/.tools/build/sealgate (ignored by git): a fixed
// place, replaced atomically, so that test binaries building at the same time
// do not disturb each other and repeated runs leave nothing behind. It is
// built as released: without cgo, with the daemon binary sealgate-daemon
// beside it, which `sealgate run` executes.
func BuildSealgate(t testing.TB) string {
	t.Helper()
	buildCommand(t, "sealgate-daemon", "CGO_ENABLED=0")
	return buildCommand(t, "sealgate", "CGO_ENABLED=0")
}

// BuildRuntimeGate builds ./cmd/sealgate-runc, the runtime gate, as it is
// released: static, without cgo.
func BuildRuntimeGate(t testing.TB) string {
	t.Helper()
	return buildCommand(t, "sealgate-runc", "CGO_ENABLED=0")
}

// buildRuncClamp builds the test-only runc wrapper (runcclamp) that execs
// runc at runcPath.
func buildRuncClamp(runcPath string) (string, error) {
	v, _ := builds.LoadOrStore("runcclamp", &build{})
	b := v.(*build)
	b.once.Do(func() {
		b.path, b.err = goBuild("runcclamp", "./internal/testenv/runcclamp", "CGO_ENABLED=0", "-ldflags=-X main.runc="+runcPath)
	})
	return b.path, b.err
}

func buildCommand(t testing.TB, name, env string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(name, &build{})
	b := v.(*build)
	b.once.Do(func() { b.path, b.err = goBuild(name, "./cmd/"+name, env) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func goBuild(name, pkg, env string, flags ...string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	dir := filepath.Join(root, ".tools", "build")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	removeStale(dir, name+"-*.tmp", 3*buildTimeout)
	f, err := os.CreateTemp(dir, name+"-*.tmp")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp) // gone after the rename; removes a failed build's leftovers

	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, append(append([]string{"build", "-o", tmp}, flags...), pkg)...)
	cmd.Dir = root
	if env != "" {
		cmd.Env = append(os.Environ(), env)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: go build %s: %w\n%s", name, pkg, err, b)
	}
	out := filepath.Join(dir, name)
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	return out, nil
}

// removeStale removes files matching pattern in dir older than age: the
// temporary outputs of builds whose test binary was killed before its
// deferred clean-up ran.
func removeStale(dir, pattern string, age time.Duration) {
	matches, _ := filepath.Glob(filepath.Join(dir, pattern))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && time.Since(fi.ModTime()) > age {
			os.Remove(m)
		}
	}
}
