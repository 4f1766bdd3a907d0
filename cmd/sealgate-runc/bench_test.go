package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/runtimegate"
)

// allowRecorded answers from records, as the daemon does.
type allowRecorded struct{ r *runtimegate.Records }

func (a allowRecorded) Check(_ context.Context, req runtimegate.Request) runtimegate.Answer {
	rec, ok := a.r.Take(req.ID)
	if !ok || rec.Image != req.Image {
		return runtimegate.Answer{Reason: "no record"}
	}
	return runtimegate.Answer{Allowed: rec.Allowed}
}

func (a allowRecorded) Status() runtimegate.Status { return runtimegate.Status{} }

// wrapperEnv builds the wrapper as released, a daemon socket, and a bundle
// whose spec is the size of containerd's (annotations plus ~8 KiB).
func wrapperEnv(tb testing.TB) (bin, bundle, sock string, recs *runtimegate.Records) {
	tb.Helper()
	dir := tb.TempDir()
	bin = filepath.Join(dir, "sealgate-runc")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build: %v\n%s", err, out)
	}
	bundle = filepath.Join(dir, "bundle")
	spec := map[string]any{
		"ociVersion": "1.2.0",
		"process":    map[string]any{"args": []string{"sleep", "3600"}, "env": []string{"PATH=/usr/bin", "PAD=" + strings.Repeat("x", 8<<10)}},
		"annotations": map[string]string{
			runtimegate.AnnotationContainerType: runtimegate.KindContainer, runtimegate.AnnotationSandboxID: "pod",
			runtimegate.AnnotationImageName: "registry.example/app:v1", runtimegate.AnnotationContainerName: "app",
			runtimegate.AnnotationSandboxName: "web", runtimegate.AnnotationSandboxNamespace: "default",
		},
	}
	b, _ := json.Marshal(spec)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		tb.Fatal(err)
	}
	recs = runtimegate.NewRecords(0, 0)
	sock = filepath.Join(dir, "run", "gate.sock")
	srv, err := runtimegate.Listen(sock, allowRecorded{recs}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	return bin, bundle, sock, recs
}

// BenchmarkWrapperProcess times the whole runtime gate process for a
// create the daemon has a record of: start, read the spec, ask the daemon,
// exec the runtime (here /bin/true, so that runc's own time is not in the
// figure). BenchmarkRuntimeAlone is that exec without the wrapper; the
// difference is what the gate adds. Medians are reported beside the means.
func BenchmarkWrapperProcess(b *testing.B) {
	bin, bundle, sock, recs := wrapperEnv(b)
	env := append(os.Environ(), runtimegate.RuntimeEnv+"=/bin/true", runtimegate.SocketEnv+"="+sock)
	var took []time.Duration
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("c%d", i)
		recs.Put(id, runtimegate.Record{Image: "registry.example/app:v1", SandboxID: "pod", Allowed: true})
		cmd := exec.Command(bin, "--root", "/run/r", "--log", filepath.Join(bundle, "log.json"), "--log-format", "json",
			"create", "--bundle", bundle, "--pid-file", filepath.Join(bundle, "pid"), id)
		cmd.Env = env
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("wrapper refused: %v\n%s", err, out)
		}
		took = append(took, time.Since(start))
	}
	reportMedian(b, took)
}

func BenchmarkRuntimeAlone(b *testing.B) {
	var took []time.Duration
	for b.Loop() {
		cmd := exec.Command("/bin/true", "create", "--bundle", "/b", "id")
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	reportMedian(b, took)
}

// BenchmarkWrapperPassThrough is a runc command that creates nothing
// (state, kill, delete): the wrapper only execs the runtime.
func BenchmarkWrapperPassThrough(b *testing.B) {
	bin, _, sock, _ := wrapperEnv(b)
	env := append(os.Environ(), runtimegate.RuntimeEnv+"=/bin/true", runtimegate.SocketEnv+"="+sock)
	var took []time.Duration
	for b.Loop() {
		cmd := exec.Command(bin, "--root", "/run/r", "state", "id")
		cmd.Env = env
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	reportMedian(b, took)
}

func reportMedian(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
}

// TestWrapperProcess runs the released wrapper end to end: an allowed
// create is handed to the runtime with its arguments unchanged; a refused
// one never reaches it and leaves sealgate's reason in runc's log, where
// containerd's shim reads it.
func TestWrapperProcess(t *testing.T) {
	bin, bundle, sock, recs := wrapperEnv(t)
	dir := t.TempDir()
	runc := filepath.Join(dir, "runc")
	argsFile := filepath.Join(dir, "args")
	if err := os.WriteFile(runc, []byte("#!/bin/sh\necho \"$@\" > "+argsFile+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "log.json")
	run := func(id string) (string, error) {
		cmd := exec.Command(bin, "--root", "/run/r", "--log", logFile, "--log-format", "json", "create", "--bundle", bundle, id)
		cmd.Env = append(os.Environ(), runtimegate.RuntimeEnv+"="+runc, runtimegate.SocketEnv+"="+sock)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	recs.Put("ok", runtimegate.Record{Image: "registry.example/app:v1", Allowed: true})
	if out, err := run("ok"); err != nil {
		t.Fatalf("allowed create refused: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(argsFile)
	if want := "--root /run/r --log " + logFile + " --log-format json create --bundle " + bundle + " ok\n"; string(got) != want {
		t.Errorf("runtime got %q, want %q", got, want)
	}
	os.Remove(argsFile)
	out, err := run("never-decided")
	if err == nil {
		t.Fatalf("create without a record reached the runtime:\n%s", out)
	}
	if _, err := os.Stat(argsFile); err == nil {
		t.Error("the runtime ran for a refused create")
	}
	log, _ := os.ReadFile(logFile)
	var line struct{ Level, Msg string }
	if err := json.Unmarshal(log, &line); err != nil || line.Level != "error" || !strings.Contains(line.Msg, "sealgate runtime gate: refused container never-decided") {
		t.Errorf("runc log %q: want an error line with sealgate's refusal (%v)", log, err)
	}
}

// TestWrapperInstructions counts, with valgrind's callgrind, the
// instructions the wrapper executes for a checked create up to the exec of
// the runtime, beside a Go program that only exits: a figure that does not
// depend on how fast this machine creates processes. Run it with
// SEALGATE_CALLGRIND=1 (docs/performance.md).
func TestWrapperInstructions(t *testing.T) {
	if os.Getenv("SEALGATE_CALLGRIND") != "1" {
		t.Skip("set SEALGATE_CALLGRIND=1 to count instructions with valgrind")
	}
	if _, err := exec.LookPath("valgrind"); err != nil {
		t.Skip("no valgrind")
	}
	bin, bundle, sock, recs := wrapperEnv(t)
	dir := t.TempDir()
	exit := filepath.Join(dir, "exit")
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"os\"\n\nfunc main() { os.Exit(0) }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module exit\n\ngo 1.26\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", exit, ".")
	build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	count := func(env []string, args ...string) string {
		out := filepath.Join(dir, "cg.out")
		cmd := exec.Command("valgrind", append([]string{"--tool=callgrind", "--callgrind-out-file=" + out}, args...)...)
		cmd.Env = env
		b, _ := cmd.CombinedOutput()
		for _, l := range strings.Split(string(b), "\n") {
			if i := strings.Index(l, "Collected : "); i >= 0 {
				return strings.TrimSpace(l[i+len("Collected : "):])
			}
		}
		t.Fatalf("no count from callgrind:\n%s", b)
		return ""
	}
	// The runtime does not exist: the wrapper stops right after its check,
	// where it would exec runc.
	env := append(os.Environ(), runtimegate.RuntimeEnv+"="+filepath.Join(dir, "no-runc"), runtimegate.SocketEnv+"="+sock)
	recs.Put("c1", runtimegate.Record{Image: "registry.example/app:v1", SandboxID: "pod", Allowed: true})
	t.Logf("instructions: Go program that exits: %s", count(os.Environ(), exit))
	t.Logf("instructions: wrapper, pass-through (state) up to exec: %s", count(env, bin, "--root", "/r", "state", "c1"))
	t.Logf("instructions: wrapper, checked create up to exec: %s", count(env, bin, "--root", "/r", "--log-format", "json", "create", "--bundle", bundle, "c1"))
}
