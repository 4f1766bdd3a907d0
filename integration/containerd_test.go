//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSignedImageRuns: with sealgate connected, an image signed with the
// trusted key is created and runs. sealgate run became the daemon binary
// (same process), which checked the image in a verifier process of its
// own; stopping the daemon stops the verifier.
func TestSignedImageRuns(t *testing.T) {
	f := newFixture(t)
	c := f.node(t)
	sg := startSealgate(t, f, c)

	id, out, err := c.Run(f.signedTag, "signed", "default")
	if err != nil {
		t.Fatalf("run signed image: %v\n%s", err, out)
	}
	state, err := c.ContainerState(id)
	if err != nil {
		t.Fatal(err)
	}
	if state != "CONTAINER_RUNNING" {
		t.Errorf("signed container state = %s, want CONTAINER_RUNNING", state)
	}
	if ref := imageRef(t, c, id); !strings.HasSuffix(ref, f.signed.DigestStr()) {
		t.Errorf("container runs image %s, want the signed digest %s", ref, f.signed.DigestStr())
	}
	pid := sg.cmd.Process.Pid
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || filepath.Base(exe) != "sealgate-daemon" {
		t.Errorf("sealgate run (pid %d) runs %q (%v), want sealgate-daemon", pid, exe, err)
	}
	verifiers := verifierProcesses(pid)
	if len(verifiers) != 1 {
		t.Fatalf("the daemon has %d verifier processes after a cold decision, want 1", len(verifiers))
	}
	sg.stop()
	deadline := time.Now().Add(5 * time.Second)
	for _, err := os.Stat(fmt.Sprintf("/proc/%d", verifiers[0])); err == nil; _, err = os.Stat(fmt.Sprintf("/proc/%d", verifiers[0])) {
		if time.Now().After(deadline) {
			t.Fatalf("the verifier process %d outlived the daemon", verifiers[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// verifierProcesses are pid's children that run `sealgate verifier`.
func verifierProcesses(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			cmdline, _ := os.ReadFile("/proc/" + f + "/cmdline")
			args := strings.Split(string(cmdline), "\x00")
			if len(args) >= 2 && filepath.Base(args[0]) == "sealgate" && args[1] == "verifier" {
				c, _ := strconv.Atoi(f)
				out = append(out, c)
			}
		}
	}
	return out
}

// TestUnsignedImageRefused: with sealgate connected, an image without a
// signature is refused at create, and the refusal says what, which digest
// and which rule.
func TestUnsignedImageRefused(t *testing.T) {
	f := newFixture(t)
	c := f.node(t)
	startSealgate(t, f, c)

	id, out, err := c.Run(f.unsignedTag, "unsigned", "default")
	if err == nil {
		state, _ := c.ContainerState(id)
		t.Fatalf("unsigned image was created (container %s, state %s)\n%s", id, state, out)
	}
	if miss := missing(out, "sealgate: denied", f.unsigned.DigestStr(), "(rule "+ruleApps+")"); len(miss) > 0 {
		t.Errorf("crictl output lacks %q:\n%s", miss, out)
	}
	ids, err := c.Containers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Errorf("containers exist after the refusal: %q", ids)
	}
}

// TestRequiredPluginAbsent: with NRI's default validator requiring
// "sealgate", no container is created while sealgate is not connected, not
// even a signed one; once sealgate connects the same image runs, which also
// shows that required_plugins names the plugin without its index.
func TestRequiredPluginAbsent(t *testing.T) {
	f := newFixture(t)
	c := f.node(t, "sealgate")

	id, out, err := c.Run(f.signedTag, "signed", "default")
	if err == nil {
		t.Fatalf("container %s created with the required plugin absent\n%s", id, out)
	}
	// crictl prints the runtime's error with its quotes escaped:
	// ... reason: validation error: required plugin \"sealgate\" not present
	if miss := missing(out, "required plugin", "sealgate", "not present"); len(miss) > 0 {
		t.Errorf("crictl output lacks %q:\n%s", miss, out)
	}
	ids, err := c.Containers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Errorf("crictl ps -a lists %q after the refused create, want none", ids)
	}

	startSealgate(t, f, c)
	id, out, err = c.Run(f.signedTag, "signed-again", "default")
	if err != nil {
		t.Fatalf("run signed image with sealgate connected: %v\n%s", err, out)
	}
	if state, err := c.ContainerState(id); err != nil || state != "CONTAINER_RUNNING" {
		t.Errorf("state = %s (%v), want CONTAINER_RUNNING", state, err)
	}
}

// TestSandboxImageRefused: sealgate checks the pod sandbox (pause) image on
// RunPodSandbox, finding it through containerd's own stores. With a policy
// that has no rule for it, the pod is refused before any container exists.
func TestSandboxImageRefused(t *testing.T) {
	f := newFixture(t)
	writeFile(t, f.policy, fmt.Sprintf(`mode: enforce
default: deny
rules:
  - name: %s
    images: ["%s"]
    signatures:
      authorities: [{key: keys/release.pub}]
`, ruleApps, f.reg.Ref("apps/**")))
	c := f.node(t)
	startSealgate(t, f, c)

	id, out, err := c.Run(f.signedTag, "signed", "default")
	if err == nil {
		t.Fatalf("pod with an unapproved sandbox image was created (container %s)\n%s", id, out)
	}
	if miss := missing(out, "sealgate: denied", f.sandbox.DigestStr(), "(rule default)", "no rule matches"); len(miss) > 0 {
		t.Errorf("crictl output lacks %q:\n%s", miss, out)
	}
	pods, err := c.Crictl("pods", "-q", "--state", "ready")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(pods) != "" {
		t.Errorf("ready pods after the refusal: %q", pods)
	}
}
