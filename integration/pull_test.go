//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestVerifyAtPull: with the drop-in's image verifier pointed at sealgate,
// containerd refuses to pull the unsigned image (sealgate's reason in the
// pull error) and pulls the signed one, whose verdict the daemon then
// holds; an unsigned image that reaches the node without a pull (ctr
// images import) is still refused when a container of it is created. Real
// containerd (its bindir image verifier and CRI), crictl, ctr and cosign.
func TestVerifyAtPull(t *testing.T) {
	f := newFixture(t)
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "install", "containerd", "sealgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	verifiers := t.TempDir()
	if err := os.Symlink(testenv.BuildSealgate(t), filepath.Join(verifiers, "sealgate")); err != nil {
		t.Fatal(err)
	}
	const installedDir = "/usr/local/lib/sealgate/image-verifier"
	if !strings.Contains(string(b), "'"+installedDir+"'") {
		t.Fatalf("the drop-in does not name %s; install.sh rewrites that path", installedDir)
	}
	dropIn := filepath.Join(t.TempDir(), "sealgate.toml")
	text := strings.ReplaceAll(string(b), "/usr/local/bin/sealgate-runc", testenv.BuildRuntimeGate(t))
	writeFile(t, dropIn, strings.ReplaceAll(text, installedDir, verifiers))
	run, err := os.MkdirTemp("", "sgp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	socket := filepath.Join(run, "gate.sock")
	c := testenv.NewContainerd(t, testenv.ContainerdOptions{HostsDir: f.hostsDir, SandboxImage: f.sandbox.String(),
		RequestTimeout: 2 * time.Second, Imports: []string{dropIn}, Env: []string{"SEALGATE_GATE_SOCKET=" + socket}})
	s := startSealgateWith(t, c, "--gate-socket", socket, "--insecure-no-tpm", "--policy", f.policy, "--registry-hosts-dir", f.hostsDir, "--bundle-store", "")

	err = c.Pull(f.unsignedTag)
	if err == nil || !strings.Contains(err.Error(), "sealgate") || !strings.Contains(err.Error(), f.unsigned.DigestStr()) {
		t.Fatalf("containerd pulled the unsigned image, or not refused by sealgate naming its digest: %v\nsealgate log:\n%s", err, s.log())
	}
	if out, _ := c.Crictl("inspecti", f.unsignedTag); !strings.Contains(out, "not found") && !strings.Contains(out, "no such image") && strings.Contains(out, f.unsigned.DigestStr()) {
		t.Errorf("the refused image is in the store:\n%s", out)
	}
	if err := c.Pull(f.signedTag); err != nil {
		t.Fatalf("signed image refused at pull: %v\nsealgate log:\n%s", err, s.log())
	}
	waitLog(t, s, 5*time.Second, "pull verified", f.signed.DigestStr(), "source=verified")
	if _, out, err := c.Run(f.signedTag, "signed", "default"); err != nil {
		t.Fatalf("signed image refused at create after its pull: %v\n%s", err, out)
	}

	// With sealgate stopped, a pull is decided by the verifier itself from
	// the node's sealed trust store; this test node has none, so nothing
	// is let through.
	s.stop()
	other := pushBusybox(t, f.reg, "apps/later:v1", "later", "sleep", "3600")
	if err := c.Pull(f.reg.Ref("apps/later:v1")); err == nil || !strings.Contains(err.Error(), "sealgate is not running") {
		t.Fatalf("a pull with sealgate stopped and no trust store to decide with was not refused: %v (%s)", err, other)
	}
	s = startSealgateWith(t, c, "--gate-socket", socket, "--insecure-no-tpm", "--policy", f.policy, "--registry-hosts-dir", f.hostsDir, "--bundle-store", "")

	// An image that never went through a pull.
	ref, err := name.ParseReference(f.unsignedTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(t.TempDir(), "unsigned.tar")
	if err := tarball.WriteToFile(tar, ref, img); err != nil {
		t.Fatal(err)
	}
	ctr := testenv.RequireTool(t, "ctr")
	if out, err := exec.Command(ctr, "--address", c.Address, "-n", "k8s.io", "images", "import", tar).CombinedOutput(); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	if _, out, err := c.Run(f.unsignedTag, "imported", "default"); err == nil || !strings.Contains(out, "sealgate: denied") {
		t.Fatalf("an imported unsigned image was not refused at create: %v\n%s", err, out)
	}
}
