//go:build integration

package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/sealgate/sealgate/internal/testenv"
)

// Names the tests assert on.
const (
	ruleApps    = "apps"
	ruleSandbox = "sandbox"
	// sandboxCmd ends at once on SIGTERM, so that pods stop fast.
	sandboxCmd = `trap "exit 0" TERM; while true; do sleep 1; done`
)

// fixture is a registry with three runnable images, one of them signed
// with a cosign key, and a trust store whose policy requires that key for
// the apps/ repositories and allows the sandbox image without signatures.
type fixture struct {
	reg      *testenv.Registry
	hostsDir string
	// trustDir holds policy.yaml and keys/release.pub.
	trustDir string
	policy   string
	pubKey   string

	sandbox  name.Digest
	signed   name.Digest
	unsigned name.Digest
	// signedTag and unsignedTag are the tag references pods name, as a
	// kubelet would; the runtime resolves them to the digests above.
	signedTag, unsignedTag string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cosign := testenv.NewCosign(t)
	f := &fixture{reg: testenv.NewRegistry(t, testenv.RegistryOptions{}), hostsDir: t.TempDir(), trustDir: t.TempDir()}
	if err := testenv.WriteHostsToml(f.hostsDir, f.reg.Addr); err != nil {
		t.Fatal(err)
	}

	f.sandbox = pushBusybox(t, f.reg, "sandbox:v1", "", "sh", "-c", sandboxCmd)
	f.signed = pushBusybox(t, f.reg, "apps/signed:v1", "signed", "sleep", "3600")
	f.unsigned = pushBusybox(t, f.reg, "apps/unsigned:v1", "unsigned", "sleep", "3600")
	if f.signed.DigestStr() == f.unsigned.DigestStr() {
		t.Fatalf("signed and unsigned images have the same digest %s", f.signed.DigestStr())
	}
	f.signedTag, f.unsignedTag = f.reg.Ref("apps/signed:v1"), f.reg.Ref("apps/unsigned:v1")

	priv, pub, err := cosign.GenerateKeyPair("release")
	if err != nil {
		t.Fatal(err)
	}
	if err := cosign.Sign(priv, f.signed.String()); err != nil {
		t.Fatal(err)
	}
	f.pubKey = filepath.Join(f.trustDir, "keys", "release.pub")
	copyFile(t, pub, f.pubKey)
	f.policy = filepath.Join(f.trustDir, "policy.yaml")
	writeFile(t, f.policy, f.policyYAML())
	return f
}

// policyYAML is the trust store's policy (DESIGN.md section 5).
func (f *fixture) policyYAML() string {
	return fmt.Sprintf(`mode: enforce
default: deny
rules:
  - name: %s
    images: ["%s"]
    action: allow
  - name: %s
    images: ["%s"]
    signatures:
      threshold: 1
      authorities:
        - key: keys/release.pub
`, ruleSandbox, f.reg.Ref("sandbox"), ruleApps, f.reg.Ref("apps/**"))
}

// pushBusybox pushes a runnable busybox image. variant, when set, becomes a
// label so that images with the same command still differ in digest.
func pushBusybox(t testing.TB, reg *testenv.Registry, repoTag, variant string, cmd ...string) name.Digest {
	t.Helper()
	img, err := testenv.BusyboxImage(cmd...)
	if errors.Is(err, testenv.ErrToolNotFound) {
		testenv.RequireTool(t, "busybox") // skips, or fails with SEALGATE_REQUIRE_TOOLS=1
	}
	if err != nil {
		t.Fatal(err)
	}
	if variant != "" {
		img = withLabel(t, img, "dev.sealgate.test.variant", variant)
	}
	d, err := reg.Push(img, repoTag)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func withLabel(t testing.TB, img v1.Image, key, value string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := *cf.Config.DeepCopy()
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels[key] = value
	out, err := mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// node starts containerd for the fixture's registry and sandbox image.
func (f *fixture) node(t testing.TB, required ...string) *testenv.Containerd {
	t.Helper()
	return testenv.NewContainerd(t, testenv.ContainerdOptions{
		HostsDir:        f.hostsDir,
		SandboxImage:    f.sandbox.String(),
		RequiredPlugins: required,
		RequestTimeout:  2 * time.Second,
	})
}

// sealgate is a running `sealgate run` connected to a node.
type sealgate struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	// gateSocket is where its runtime gate answers ("" when off).
	gateSocket string
}

// startSealgate runs the sealgate binary against c and waits until NRI has
// it registered and synchronized.
func startSealgate(t testing.TB, f *fixture, c *testenv.Containerd) *sealgate {
	t.Helper()
	return startSealgateWith(t, c, "--insecure-no-tpm", "--policy", f.policy, "--registry-hosts-dir", f.hostsDir, "--bundle-store", "")
}

// startSealgateWith runs `sealgate run` against c with the given trust,
// policy and source flags.
func startSealgateWith(t testing.TB, c *testenv.Containerd, args ...string) *sealgate {
	t.Helper()
	return startSealgateWithBin(t, testenv.BuildSealgate(t), c, args...)
}

// startSealgateWithBin is startSealgateWith for a given sealgate binary (an
// installed one).
func startSealgateWithBin(t testing.TB, bin string, c *testenv.Containerd, args ...string) *sealgate {
	t.Helper()
	before := c.PluginConnections("sealgate")
	s := &sealgate{logPath: filepath.Join(t.TempDir(), "sealgate.log"), exited: make(chan struct{})}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	if !slices.Contains(args, "--gate-socket") {
		// Not the node's /run/sealgate: a test node of its own.
		run, err := os.MkdirTemp("", "sgg-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(run) })
		args = append(args, "--gate-socket", filepath.Join(run, "gate.sock"))
	}
	s.gateSocket = args[slices.Index(args, "--gate-socket")+1]
	if !slices.Contains(args, "--decision-log") && !slices.Contains(args, "--state-dir") {
		// Not the machine's /var/lib/sealgate.
		args = append(args, "--decision-log", filepath.Join(t.TempDir(), "decisions.log"))
	}
	s.cmd = exec.Command(bin, append([]string{"run",
		"--nri-socket", c.NRISocket,
		"--plugin-idx", "10",
		"--containerd-address", c.Address,
		"--containerd-namespace", "k8s.io",
		"--log-level", "debug"}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("sealgate log:\n%s", s.log())
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-s.exited:
			t.Fatalf("sealgate exited before registering (%v):\n%s", s.cmd.ProcessState, s.log())
		default:
		}
		// NRI sends creates to a plugin only once it has registered and
		// answered Synchronize.
		if c.PluginConnections("sealgate") > before {
			return s
		}
		time.Sleep(100 * time.Millisecond)
		if time.Now().After(deadline) {
			t.Fatalf("sealgate did not register with containerd within 20s\nsealgate log:\n%s\ncontainerd log:\n%s", s.log(), c.LogTail(40))
		}
	}
}

var stopMu sync.Mutex

func (s *sealgate) stop() {
	stopMu.Lock()
	defer stopMu.Unlock()
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *sealgate) log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 16 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// imageRef is the digest the runtime resolved a container's image to.
func imageRef(t testing.TB, c *testenv.Containerd, id string) string {
	t.Helper()
	out, err := c.Crictl("inspect", "-o", "go-template", "--template", "{{.status.imageRef}}", id)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return strings.TrimSpace(out)
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, string(b))
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// missing returns the strings of want that out does not contain.
func missing(out string, want ...string) []string {
	var miss []string
	for _, w := range want {
		if !strings.Contains(out, w) {
			miss = append(miss, w)
		}
	}
	return miss
}
