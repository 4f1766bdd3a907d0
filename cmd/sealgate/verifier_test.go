package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/node/verifier"
)

// asMain makes the test binary sealgate itself when the environment says
// so, so that a test can start the real `sealgate verifier` as a process.
const asMain = "SEALGATE_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		os.Exit(dispatch(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestVerifierProcess: with a verifier process (sealgate run
// --verifier-process), images signed by the real cosign in a registry on
// 127.0.0.1 are decided exactly as in one process, registry requests are
// still counted, the verifier stops when idle and starts again for the
// next image, and a registry that went away is unreachable, not a
// denial of the material.
func TestVerifierProcess(t *testing.T) {
	f := newBundleFixture(t)
	exe, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(asMain, "1")
	open := func(verifierBin string) *node.Node {
		t.Helper()
		n, err := node.Open(node.Config{Local: verifier.Local, InsecureNoTPM: true, PolicyFile: f.policy, HostsDir: f.hosts, Access: node.Inspect,
			Verifier: verifierBin, VerifierIdle: 300 * time.Millisecond, DenialMemory: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		return n
	}
	inline, proc := open(""), open(exe)
	decide := func(n *node.Node, img name.Digest) decision.Decision {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return n.Engine().Decide(ctx, decision.Request{Image: img.String(), Namespace: "default"})
	}
	for _, img := range []name.Digest{f.classic, f.bundled, f.unsigned} {
		want, got := decide(inline, img), decide(proc, img)
		if got.Source != decision.SourceVerified || !reflect.DeepEqual(got.Reasons, want.Reasons) || got.Allowed != want.Allowed ||
			!reflect.DeepEqual(got.SatisfiedBy, want.SatisfiedBy) {
			t.Errorf("%s through the verifier:\n%+v\nin one process:\n%+v", img, got, want)
		}
	}
	if !decide(proc, f.classic).Allowed || decide(proc, f.unsigned).Allowed {
		t.Error("the signed image must run and the unsigned one not")
	}
	if got := proc.RequestCount(); got == 0 {
		t.Error("no registry request reported by the verifier")
	}
	pc, ok := proc.Checker().(interface {
		Starts() int
		Running() bool
	})
	if !ok {
		t.Fatalf("checker %T is not the verifier client", proc.Checker())
	}
	if pc.Starts() != 1 {
		t.Errorf("%d verifier starts for one burst, want 1", pc.Starts())
	}
	deadline := time.Now().Add(5 * time.Second)
	for pc.Running() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pc.Running() {
		t.Fatal("the verifier is still up after its idle time")
	}
	if err := f.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	never, _ := name.NewDigest(f.reg.Addr + "/app/never@sha256:" + strings.Repeat("ab", 32))
	d := decide(proc, never)
	if d.Allowed || !strings.Contains(strings.Join(d.Reasons, "; "), "the registry was unreachable and no valid cached verdict exists") || pc.Starts() != 2 {
		t.Errorf("registry down, verifier started again (%d starts): %+v", pc.Starts(), d)
	}
}
