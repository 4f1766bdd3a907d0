//go:build integration

package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestDemo runs `make demo`'s program as a user would: every step must end
// as expected (exit 0), and it must leave nothing behind.
func TestDemo(t *testing.T) {
	for _, tool := range []string{"containerd", "crictl", "cosign", "swtpm", "runc"} {
		testenv.RequireTool(t, tool)
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "demo")
	build := exec.Command("go", "build", "-o", bin, "./integration/demo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the demo: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Result: every step as expected") {
		t.Fatalf("the demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{"[14/14]", "RELOAD REFUSED", "keys/release.pub was changed", "now enforces generation 2", "source=offline-cache", "removed /tmp/sg-demo-"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
}
