//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
)

// crioNode starts CRI-O for the fixture's registry and sandbox image.
func (f *fixture) crioNode(t testing.TB, opts testenv.CRIOOptions) *testenv.CRIO {
	t.Helper()
	if opts.PauseImage == "" {
		opts.PauseImage = f.sandbox.String()
	}
	opts.InsecureRegistries = append(opts.InsecureRegistries, f.reg.Addr)
	return testenv.NewCRIO(t, opts)
}

// startSealgateCRIO runs `sealgate run` against a CRI-O node with the
// fixture's unsealed policy and waits until CRI-O has it registered and
// synchronized.
func startSealgateCRIO(t testing.TB, f *fixture, c *testenv.CRIO, extra ...string) *sealgate {
	t.Helper()
	const registered = `plugin \"10-sealgate\" connected and synchronized`
	before := strings.Count(c.Log(), registered)
	run, err := os.MkdirTemp("", "sgg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	s := &sealgate{logPath: filepath.Join(t.TempDir(), "sealgate.log"), exited: make(chan struct{}), gateSocket: filepath.Join(run, "gate.sock")}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"run", "--nri-socket", c.NRISocket, "--plugin-idx", "10", "--crio-address", c.Socket,
		"--gate-socket", s.gateSocket, "--decision-log", filepath.Join(t.TempDir(), "decisions.log"), "--log-level", "debug"}, extra...)
	if len(extra) == 0 {
		args = append(args, "--insecure-no-tpm", "--policy", f.policy, "--registry-hosts-dir", f.hostsDir, "--bundle-store", "")
	}
	s.cmd = exec.Command(testenv.BuildSealgate(t), args...)
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
	for strings.Count(c.Log(), registered) <= before {
		select {
		case <-s.exited:
			t.Fatalf("sealgate exited before registering (%v):\n%s", s.cmd.ProcessState, s.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealgate did not register with CRI-O within 20s\nsealgate log:\n%s\nCRI-O log:\n%s", s.log(), c.LogTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// TestCRIOSignedRunsUnsignedRefused: on real CRI-O 1.34, an image signed
// with the policy's key runs; an unsigned one is refused with sealgate's
// reason in crictl's output.
func TestCRIOSignedRunsUnsignedRefused(t *testing.T) {
	f := newFixture(t)
	c := f.crioNode(t, testenv.CRIOOptions{})
	s := startSealgateCRIO(t, f, c)
	if _, out, err := c.Run(f.signedTag, "signed", "default"); err != nil {
		t.Fatalf("signed image refused on CRI-O: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	_, out, err := c.Run(f.unsignedTag, "unsigned", "default")
	if err == nil {
		t.Fatalf("unsigned image ran on CRI-O:\n%s", out)
	}
	if !strings.Contains(out, "no signatures") {
		t.Errorf("crictl's output does not carry sealgate's reason:\n%s", out)
	}
	// Decided on the digests CRI-O pulled, found from its annotations and
	// image store (its NRI sends no image).
	for _, want := range [][]string{
		{`msg=allowed`, "image=" + f.signedTag, "digest=" + f.signed.DigestStr(), "container=signed"},
		{`msg=denied`, "image=" + f.unsignedTag, "digest=" + f.unsigned.DigestStr(), "container=unsigned"},
	} {
		waitLog(t, s, 5*time.Second, want...)
	}
	if strings.Contains(s.log(), "containerd") && strings.Contains(s.log(), "level=WARN") && strings.Contains(s.log(), "containerd.sock") {
		t.Errorf("sealgate on CRI-O talks of containerd:\n%s", s.log())
	}
}

// TestCRIOSandboxImageChecked: CRI-O's pause image (from its
// configuration, as CRI-O reports it) is decided at RunPodSandbox: allowed
// by the fixture's rule for it, refused by a policy without one.
func TestCRIOSandboxImageChecked(t *testing.T) {
	f := newFixture(t)
	c := f.crioNode(t, testenv.CRIOOptions{})
	s := startSealgateCRIO(t, f, c)
	if _, out, err := c.Run(f.signedTag, "with-rule", "default"); err != nil {
		t.Fatalf("a pod refused with a rule for the sandbox image: %v\n%s", err, out)
	}
	waitLog(t, s, 5*time.Second, "msg=\"allowed without signatures (audited)\"", "digest="+f.sandbox.DigestStr(), "container=sandbox")
	s.stop()

	noSandboxRule := strings.Replace(f.policyYAML(), "  - name: "+ruleSandbox+"\n    images: [\""+f.reg.Ref("sandbox")+"\"]\n    action: allow\n", "", 1)
	if noSandboxRule == f.policyYAML() {
		t.Fatal("the fixture policy has no sandbox rule to take out")
	}
	pol := filepath.Join(f.trustDir, "no-sandbox-rule.yaml") // beside keys/
	writeFile(t, pol, noSandboxRule)
	s = startSealgateCRIO(t, f, c, "--insecure-no-tpm", "--policy", pol, "--registry-hosts-dir", f.hostsDir, "--bundle-store", "")
	_, out, err := c.Run(f.signedTag, "without-rule", "default")
	if err == nil {
		t.Fatalf("a pod ran whose sandbox image no rule allows:\n%s", out)
	}
	if !strings.Contains(out, "runp") && !strings.Contains(out, "sandbox") {
		t.Errorf("not refused at the sandbox:\n%s", out)
	}
	waitLog(t, s, 5*time.Second, "msg=denied", "digest="+f.sandbox.DigestStr(), "container=sandbox")
}
