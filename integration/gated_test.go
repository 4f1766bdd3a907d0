//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
)

// gatedNode is a containerd node set up as install.sh sets one up: the
// installed drop-in (NRI with required_plugins, runc through the runtime
// gate) imported by containerd's config.
type gatedNode struct {
	f      *fixture
	c      *testenv.Containerd
	dropIn string
	// socket is the runtime gate's socket; containerd's environment
	// points the wrapper at it.
	socket string
}

// installedDropIn writes install/containerd/sealgate.toml into dir with the
// wrapper's path rewritten as install.sh rewrites it for its --prefix.
func installedDropIn(t testing.TB, dir string) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "install", "containerd", "sealgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/sealgate-runc"
	if !strings.Contains(string(b), "'"+installed+"'") {
		t.Fatalf("the drop-in does not name %s; install.sh rewrites that path", installed)
	}
	p := filepath.Join(dir, "sealgate.toml")
	writeFile(t, p, strings.ReplaceAll(string(b), installed, testenv.BuildRuntimeGate(t)))
	return p
}

func newGatedNode(t testing.TB, f *fixture) *gatedNode {
	t.Helper()
	if f == nil {
		f = newFixture(t)
	}
	// Short: it is a unix socket path.
	run, err := os.MkdirTemp("", "sgg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	n := &gatedNode{f: f, dropIn: installedDropIn(t, t.TempDir()), socket: filepath.Join(run, "gate.sock")}
	n.c = testenv.NewContainerd(t, testenv.ContainerdOptions{
		HostsDir:       f.hostsDir,
		SandboxImage:   f.sandbox.String(),
		RequestTimeout: 2 * time.Second,
		Imports:        []string{n.dropIn},
		Env:            []string{"SEALGATE_GATE_SOCKET=" + n.socket},
	})
	return n
}

// start runs sealgate against the node with its runtime gate socket.
func (n *gatedNode) start(t testing.TB, extra ...string) *sealgate {
	t.Helper()
	args := append([]string{"--gate-socket", n.socket}, extra...)
	if len(extra) == 0 {
		args = append(args, "--insecure-no-tpm", "--policy", n.f.policy, "--registry-hosts-dir", n.f.hostsDir, "--bundle-store", "")
	}
	return startSealgateWith(t, n.c, args...)
}

// run creates and starts image in a new pod.
func (n *gatedNode) run(image, name string, ann map[string]string) (id, out string, err error) {
	return n.c.RunPod(testenv.PodSpec{Image: image, Name: name, Namespace: "default", Annotations: ann})
}

// ranUnsigned lists the containers of the unsigned image that the runtime
// started (a process ran), by ID.
func (n *gatedNode) ranUnsigned(t testing.TB) []string {
	t.Helper()
	out, err := n.c.Crictl("ps", "-a", "-q")
	if err != nil {
		t.Fatalf("crictl ps: %v: %s", err, out)
	}
	var ran []string
	for _, id := range strings.Fields(out) {
		o, err := n.c.Crictl("inspect", "-o", "go-template", "--template", "{{.status.imageRef}} {{.status.startedAt}} {{.status.state}}", id)
		if err != nil {
			t.Fatalf("crictl inspect %s: %v: %s", id, err, o)
		}
		f := strings.Fields(o)
		if len(f) < 3 || !strings.HasSuffix(f[0], n.f.unsigned.DigestStr()) {
			continue
		}
		// startedAt is the epoch for a container whose task never started.
		if !strings.HasPrefix(f[1], "1970-01-01T00:00:00") || f[2] == "CONTAINER_RUNNING" {
			ran = append(ran, id+" ("+strings.TrimSpace(o)+")")
		}
	}
	return ran
}

// signal sends sig to sealgate's process.
func (s *sealgate) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// sealgateCmd runs a sealgate command and returns its output and exit code.
func sealgateCmd(t testing.TB, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(testenv.BuildSealgate(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("sealgate %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

func podSpec(image, name string, beforeCreate func()) testenv.PodSpec {
	return testenv.PodSpec{Image: image, Name: name, Namespace: "default", BeforeCreate: beforeCreate}
}

// waitLog waits until one line of sealgate's log holds every string of want.
func waitLog(t testing.TB, s *sealgate, timeout time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(s.log(), "\n") {
			if len(missing(line, want...)) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealgate's log has no line with %q after %v:\n%s", want, timeout, s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containerdBin(t testing.TB) string {
	t.Helper()
	p, err := testenv.Tool("containerd")
	if err != nil {
		t.Fatal(err)
	}
	return p
}
