//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestInstallStaged: install.sh --destdir stages both gates as an image
// builder needs them: both binaries, the unit, and a drop-in that names the
// runtime gate where it was installed; uninstall.sh --destdir removes them
// and keeps the trust store.
func TestInstallStaged(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	out, err := exec.Command("sh", filepath.Join(root, "install", "install.sh"), "--destdir", dest, "--prefix", "/opt/sg",
		"--bin", testenv.BuildSealgate(t), "--gate-bin", testenv.BuildRuntimeGate(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"opt/sg/bin/sealgate", "opt/sg/bin/sealgate-runc", "etc/systemd/system/sealgate.service", "etc/containerd/conf.d/sealgate.toml"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not staged: %v", err)
		}
	}
	dropIn, _ := os.ReadFile(filepath.Join(dest, "etc/containerd/conf.d/sealgate.toml"))
	for _, want := range []string{"BinaryName = '/opt/sg/bin/sealgate-runc'", "required_plugins = ['sealgate']", "pod_annotations = ['tolerate-missing-plugins.sealgate.dev'"} {
		if !strings.Contains(string(dropIn), want) {
			t.Errorf("staged drop-in lacks %q", want)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/sealgate.service"))
	if !strings.Contains(string(unit), "ExecStart=/opt/sg/bin/sealgate run") || !strings.Contains(string(unit), "--gate-socket /run/sealgate/gate.sock") {
		t.Errorf("staged unit does not run /opt/sg/bin/sealgate with the gate socket:\n%s", unit)
	}

	out, err = exec.Command("sh", filepath.Join(root, "install", "uninstall.sh"), "--destdir", dest, "--prefix", "/opt/sg").CombinedOutput()
	if err != nil {
		t.Fatalf("uninstall.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"opt/sg/bin/sealgate", "opt/sg/bin/sealgate-runc", "etc/systemd/system/sealgate.service", "etc/containerd/conf.d/sealgate.toml"} {
		if _, err := os.Lstat(filepath.Join(dest, f)); err == nil {
			t.Errorf("uninstall left %s", f)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/sealgate")); err != nil {
		t.Errorf("uninstall removed the trust store: %v", err)
	}
}
