// Command sealgate-runc is sealgate's runtime gate: configured as the runc
// runtime's BinaryName, it stands in for runc. Before runc creates a
// container (create, run, restore) it asks the sealgate daemon whether that
// container was allowed, and refuses when the daemon does not answer; every
// other runc command, and every allowed creation, is handed to the real runc
// with exec, unchanged.
//
// Run as "sealgate-runc hook", it is the same gate as an OCI createRuntime
// hook (CRI-O's hooks.d), for any OCI runtime: the container's state on
// standard input, a non-zero exit refusing the creation.
//
// It reads no flags of its own: the real runtime is $SEALGATE_RUNC or the
// first runc on PATH that is not this program, the daemon's socket is
// $SEALGATE_GATE_SOCKET or /run/sealgate/gate.sock.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/runtimegate"
)

func main() {
	args := os.Args[1:]
	if len(args) == 1 && args[0] == "hook" {
		hook()
	}
	runc, err := realRuntime()
	if err != nil {
		fail(runtimegate.Invocation{}, "sealgate runtime gate: "+err.Error())
	}
	inv, err := runtimegate.ParseRuncArgs(args)
	if err != nil {
		fail(inv, "sealgate runtime gate: refused: "+err.Error())
	}
	if runtimegate.Creates(inv.Command) {
		g := runtimegate.Gate{Socket: envOr(runtimegate.SocketEnv, runtimegate.DefaultSocket), Timeout: timeout()}
		v := g.Decide(inv)
		if !v.Allowed {
			fail(inv, v.Message)
		}
		if v.Message != "" {
			fmt.Fprintln(os.Stderr, v.Message)
		}
	}
	err = syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
	fail(inv, fmt.Sprintf("sealgate runtime gate: exec %s: %v", runc, err))
}

// hook is the gate as an OCI createRuntime hook (CRI-O's hooks.d): the
// state on standard input, the verdict as the exit status, the reason on
// standard error, which the runtime puts in its error.
func hook() {
	b, err := io.ReadAll(io.LimitReader(os.Stdin, runtimegate.HookStateLimit+1))
	if err != nil {
		fail(runtimegate.Invocation{}, "sealgate runtime gate: refused: read the container's state: "+err.Error())
	}
	g := runtimegate.Gate{Socket: envOr(runtimegate.SocketEnv, runtimegate.DefaultSocket), Timeout: timeout()}
	v := g.DecideHook(b)
	if !v.Allowed {
		fail(runtimegate.Invocation{}, v.Message)
	}
	if v.Message != "" {
		fmt.Fprintln(os.Stderr, v.Message)
	}
	os.Exit(0)
}

// fail explains a refusal where the shim looks for it (runc's log) and on
// stderr, and exits non-zero.
func fail(inv runtimegate.Invocation, msg string) {
	fmt.Fprintln(os.Stderr, msg)
	if inv.Log != "" {
		if f, err := os.OpenFile(inv.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			_, _ = f.Write(runtimegate.RuncLogLine(inv.LogFormat, msg, time.Now()))
			f.Close()
		}
	}
	os.Exit(1)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func timeout() time.Duration {
	if v := os.Getenv(runtimegate.TimeoutEnv); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return runtimegate.DefaultTimeout
}

// realRuntime finds the runtime to hand over to: never this program, which
// would loop.
func realRuntime() (string, error) {
	self, _ := os.Executable()
	if p := os.Getenv(runtimegate.RuntimeEnv); p != "" {
		if sameFile(p, self) {
			return "", fmt.Errorf("%s=%s is this wrapper itself", runtimegate.RuntimeEnv, p)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, "runc")
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 || sameFile(p, self) {
			continue
		}
		return p, nil
	}
	return "", fmt.Errorf("no runc found on PATH (%s) and %s is not set", strings.TrimSpace(os.Getenv("PATH")), runtimegate.RuntimeEnv)
}

func sameFile(a, b string) bool {
	if b == "" {
		return false
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}
