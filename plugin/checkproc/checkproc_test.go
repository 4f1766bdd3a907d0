package checkproc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/checkproc"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
)

// The test binary is the verifier when this is set: Serve with a checker
// that answers by the image's repository, so that each test can make the
// verifier allow, deny, find the sources down, hang or die. The real
// checker through the real `sealgate verifier` is cmd/sealgate's
// TestVerifierProcess.
const asVerifier = "CHECKPROC_TEST_VERIFIER"

func TestMain(m *testing.M) {
	if os.Getenv(asVerifier) == "1" {
		err := checkproc.Serve(context.Background(), os.Stdin, os.Stdout, func(checkproc.Init, *policy.Policy, checkproc.Observer) (decision.Checker, error) {
			if os.Getenv("CHECKPROC_TEST_FAIL_START") == "1" {
				return nil, errors.New("sources misconfigured")
			}
			return scripted{}, nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type scripted struct{}

func (scripted) Check(ctx context.Context, c decision.Check) decision.Outcome {
	switch c.Image.Repository {
	case "r/allow":
		return decision.Outcome{Verdict: cache.Verdict{Allowed: true, Reasons: []string{"verified by k"}}}
	case "r/deny":
		return decision.Outcome{Verdict: cache.Verdict{Reasons: []string{"no signatures"}}}
	case "r/down":
		return decision.Outcome{Verdict: cache.Verdict{Reasons: []string{"down"}}, Err: fmt.Errorf("registry: %w", decision.ErrUnreachable)}
	case "r/hang":
		<-ctx.Done()
		return decision.Outcome{Verdict: cache.Verdict{Reasons: []string{"late"}}, Err: context.Cause(ctx)}
	case "r/die":
		os.Exit(3)
	}
	return decision.Outcome{Verdict: cache.Verdict{Reasons: []string{"?"}}, Err: errors.New("unknown")}
}

func (scripted) PickPulled(context.Context, string, []string) (string, error) {
	return "sha256:" + strings.Repeat("1", 64), nil
}

func testPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(filepath.Join(t.TempDir(), "policy.yaml"), []byte("default: deny\nrules:\n  - name: r\n    images: [\"**\"]\n    action: allow\n"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func client(t *testing.T, in checkproc.Init, opts ...checkproc.ClientOption) *checkproc.Client {
	t.Helper()
	t.Setenv(asVerifier, "1")
	exe, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	c, err := checkproc.NewClient([]string{exe}, in, append([]checkproc.ClientOption{checkproc.WithStderr(os.Stderr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func check(ctx context.Context, c *checkproc.Client, p *policy.Policy, repo string) decision.Outcome {
	return c.Check(ctx, decision.Check{Image: policy.Image{Repository: repo, Digest: "sha256:" + strings.Repeat("0", 64)}, Rule: p.Rules[0]})
}

func TestClient(t *testing.T) {
	p := testPolicy(t)
	c := client(t, checkproc.InitFor(p, nil))
	ctx := context.Background()
	if out := check(ctx, c, p, "r/allow"); out.Err != nil || !out.Verdict.Allowed {
		t.Errorf("allow: %+v", out)
	}
	if out := check(ctx, c, p, "r/deny"); out.Err != nil || out.Verdict.Allowed || out.Verdict.Reasons[0] != "no signatures" {
		t.Errorf("deny: %+v", out)
	}
	out := check(ctx, c, p, "r/down")
	if !errors.Is(out.Err, decision.ErrUnreachable) || out.Verdict.Allowed || !strings.Contains(out.Err.Error(), "registry: ") {
		t.Errorf("sources down: %+v", out)
	}
	// The daemon's fetch budget runs out while the verifier hangs: the
	// sources as good as unreachable, as in one process.
	tctx, cancel := context.WithTimeoutCause(ctx, 200*time.Millisecond, decision.ErrFetchTimeout)
	defer cancel()
	if out := check(tctx, c, p, "r/hang"); !errors.Is(out.Err, decision.ErrFetchTimeout) || out.Verdict.Allowed {
		t.Errorf("hang: %+v", out)
	}
	if d, err := c.PickPulled(ctx, "t", []string{"a", "b"}); err != nil || !strings.HasPrefix(d, "sha256:1") {
		t.Errorf("pick: %q, %v", d, err)
	}
	if c.Starts() != 1 {
		t.Errorf("%d starts, want 1", c.Starts())
	}
	// A verifier that dies denies what it was checking, never as
	// unreachable (no offline verdict stands in), and the next check
	// starts a new one.
	out = check(ctx, c, p, "r/die")
	if out.Verdict.Allowed || !errors.Is(out.Err, checkproc.ErrVerifier) || errors.Is(out.Err, decision.ErrUnreachable) || !strings.Contains(out.Err.Error(), "exit status 3") {
		t.Errorf("died: %+v", out)
	}
	if out := check(ctx, c, p, "r/allow"); !out.Verdict.Allowed || c.Starts() != 2 {
		t.Errorf("after a death: %+v, %d starts", out, c.Starts())
	}
}

// TestClientConcurrent: checks in flight together share one verifier.
func TestClientConcurrent(t *testing.T) {
	p := testPolicy(t)
	c := client(t, checkproc.InitFor(p, nil))
	var allowed atomic.Int64
	done := make(chan struct{})
	for range 16 {
		go func() {
			defer func() { done <- struct{}{} }()
			if check(context.Background(), c, p, "r/allow").Verdict.Allowed {
				allowed.Add(1)
			}
		}()
	}
	for range 16 {
		<-done
	}
	if allowed.Load() != 16 || c.Starts() != 1 {
		t.Errorf("%d of 16 allowed, %d starts", allowed.Load(), c.Starts())
	}
}

func TestClientIdle(t *testing.T) {
	p := testPolicy(t)
	c := client(t, checkproc.InitFor(p, nil), checkproc.WithIdle(100*time.Millisecond))
	if !check(context.Background(), c, p, "r/allow").Verdict.Allowed || !c.Running() {
		t.Fatal("first check")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Running() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c.Running() {
		t.Fatal("still running after the idle time")
	}
	if !check(context.Background(), c, p, "r/allow").Verdict.Allowed || c.Starts() != 2 {
		t.Errorf("%d starts after idling, want 2", c.Starts())
	}
}

// TestClientStartRefused: a verifier that cannot enforce the daemon's
// policy, or cannot start, denies with the reason.
func TestClientStartRefused(t *testing.T) {
	p := testPolicy(t)
	tampered := checkproc.InitFor(p, nil)
	tampered.Policy = []byte(strings.Replace(string(tampered.Policy), "action: allow", "action: deny", 1))
	ctx := context.Background()
	if out := check(ctx, client(t, tampered), p, "r/allow"); out.Verdict.Allowed || !errors.Is(out.Err, checkproc.ErrVerifier) || !strings.Contains(out.Err.Error(), "policy digest") {
		t.Errorf("policy changed on the way: %+v", out)
	}
	t.Setenv("CHECKPROC_TEST_FAIL_START", "1")
	if out := check(ctx, client(t, checkproc.InitFor(p, nil)), p, "r/allow"); out.Verdict.Allowed || !strings.Contains(out.Err.Error(), "sources misconfigured") {
		t.Errorf("start failed: %+v", out)
	}
	missing, err := checkproc.NewClient([]string{filepath.Join(t.TempDir(), "absent")}, checkproc.InitFor(p, nil))
	if err != nil {
		t.Fatal(err)
	}
	if out := check(ctx, missing, p, "r/allow"); out.Verdict.Allowed || !errors.Is(out.Err, checkproc.ErrVerifier) {
		t.Errorf("no verifier binary: %+v", out)
	}
}

// TestClientExecutableHeld: a verifier binary removed or replaced on disk
// after the client was made is not what starts: the file held open is.
func TestClientExecutableHeld(t *testing.T) {
	p := testPolicy(t)
	t.Setenv(asVerifier, "1")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "verifier")
	if err := os.WriteFile(path, self, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	c, err := checkproc.NewClient([]string{path}, checkproc.InitFor(p, nil), checkproc.WithExecutable(exe), checkproc.WithStderr(os.Stderr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// The upgrade: the path now names something else entirely.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out := check(context.Background(), c, p, "r/allow"); out.Err != nil || !out.Verdict.Allowed {
		t.Errorf("the verifier held open did not answer: %+v", out)
	}
}
