//go:build integration

package integration

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/sealgate/sealgate/tpm/tpmtest"
)

// TestDoctor: on a node installed as install.sh installs it (both gates,
// trust store sealed to a TPM), doctor passes; without required_plugins,
// without the runtime gate, or with sealgate stopped it fails and names the
// fix.
func TestDoctor(t *testing.T) {
	f := newFixture(t)
	swtpm := tpmtest.StartSwtpm(t)
	if out, code := sealgateCmd(t, "trust", "seal", "--trust-dir", f.trustDir, "--tpm", swtpm.Spec); code != 0 {
		t.Fatalf("trust seal: exit %d\n%s", code, out)
	}
	n := newGatedNode(t, f)
	sealed := []string{"--trust-dir", f.trustDir, "--tpm", swtpm.Spec, "--state-dir", t.TempDir(),
		"--registry-hosts-dir", f.hostsDir, "--bundle-store", ""}
	s := n.start(t, sealed...)
	doctor := func() (string, int) {
		return sealgateCmd(t, "doctor", "--gate-socket", n.socket, "--containerd-bin", containerdBin(t),
			"--containerd-config", n.c.ConfigPath(), "--trust-dir", f.trustDir, "--tpm", swtpm.Spec, "--wait", "10s")
	}

	out, code := doctor()
	if code != 0 {
		t.Fatalf("doctor on the installed node: exit %d, want 0\n%s", code, out)
	}
	t.Logf("doctor on the installed node:\n%s", out)
	for _, want := range []string{"ok   required_plugins", "ok   runtime gate on runtime runc", "ok   runtime gate answering",
		"ok   sealgate connected", "ok   trust store sealed", "ok   trust store in use", "links NRI v0.12.3"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}

	// sealgate stopped.
	s.signal(t, syscall.SIGTERM)
	<-s.exited
	out, code = doctor()
	if code != 1 || !strings.Contains(out, "FAIL runtime gate answering") || !strings.Contains(out, "fix: start sealgate") {
		t.Errorf("doctor with sealgate stopped: exit %d, want 1 naming the fix\n%s", code, out)
	}
	s = n.start(t, sealed...)

	orig, err := os.ReadFile(n.dropIn)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, from, to string
		want           []string
	}{
		{"without required_plugins", "required_plugins = ['sealgate']", "required_plugins = []",
			[]string{"FAIL required_plugins", "fix: add 'sealgate' to required_plugins"}},
		{"without the runtime gate", "BinaryName = ", "# BinaryName = ",
			[]string{"FAIL runtime gate on runtime runc", "fix: set [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options] BinaryName"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(orig), tc.from) {
				t.Fatalf("drop-in has no %q", tc.from)
			}
			writeFile(t, n.dropIn, strings.Replace(string(orig), tc.from, tc.to, 1))
			if err := n.c.Restart(); err != nil {
				t.Fatal(err)
			}
			out, code := doctor()
			if code != 1 {
				t.Errorf("doctor %s: exit %d, want 1\n%s", tc.name, code, out)
			}
			if miss := missing(out, tc.want...); len(miss) > 0 {
				t.Errorf("doctor %s: output lacks %q:\n%s", tc.name, miss, out)
			}
		})
	}
	writeFile(t, n.dropIn, string(orig))
	if err := n.c.Restart(); err != nil {
		t.Fatal(err)
	}
	if out, code := doctor(); code != 0 {
		t.Errorf("doctor after restoring the drop-in: exit %d, want 0\n%s", code, out)
	}
}
