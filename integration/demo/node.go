package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/tpm/tpmtest"
)

// images are the demo's images in the registry.
type images struct {
	sandbox, signed, unsigned name.Digest
}

// node is the throw-away node: its TPM, containerd and the sealgate binary.
type node struct {
	d        *demo
	bin      string
	trustDir string
	stateDir string
	hostsDir string
	tpm      *tpmtest.Swtpm
	ctrd     *testenv.Containerd
	socket   string
	signed   string // the signed image's digest
}

// sealedNode runs steps 6 to 14 on a node whose trust store is sealed to
// swtpm.
func (d *demo) sealedNode(root, dir string, reg *testenv.Registry, hostsDir string, cosign *testenv.Cosign, priv, pub string, im images) error {
	n := &node{d: d, trustDir: filepath.Join(dir, "trust"), stateDir: filepath.Join(dir, "state"), hostsDir: hostsDir, signed: im.signed.DigestStr()}

	// 6. The policy.
	if err := d.check(); err != nil {
		return err
	}
	policy := fmt.Sprintf(`mode: enforce
default: deny
offline:
  maxVerdictAge: 24h
rules:
  - name: pod-sandbox
    images: ["%s"]
    action: allow
  - name: demo-apps
    images: ["%s"]
    signatures:
      authorities:
        - key: keys/release.pub
`, reg.Ref("sandbox"), reg.Ref("demo/**"))
	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(n.trustDir, "keys", "release.pub"), pubPEM); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(n.trustDir, "policy.yaml"), []byte(policy)); err != nil {
		return err
	}
	d.say("Writing the trust store %s: the public key and this policy", n.trustDir)
	for _, line := range strings.Split(strings.TrimRight(policy, "\n"), "\n") {
		detail("| %s", line)
	}

	// 7. The TPM and the seal.
	if err := d.check(); err != nil {
		return err
	}
	d.say("Starting swtpm as the node's TPM, building sealgate and sealing the trust store to the TPM")
	if n.tpm, err = tpmtest.Launch(filepath.Join(dir, "tpm")); err != nil {
		return err
	}
	d.onTeardown(func() { _ = n.tpm.Stop(); detail("swtpm stopped") })
	n.bin = filepath.Join(dir, "bin", "sealgate")
	// sealgate run becomes the daemon binary beside it.
	for _, cmd := range []string{"sealgate", "sealgate-daemon"} {
		build := exec.CommandContext(d.ctx, "go", "build", "-o", filepath.Join(dir, "bin", cmd), "./cmd/"+cmd)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/%s: %w\n%s", cmd, err, out)
		}
	}
	out, err := n.sealgate("trust", "seal", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec, "--gate-socket", "")
	if err != nil {
		return fmt.Errorf("sealgate trust seal: %w\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		detail("$ sealgate trust seal | %s", line)
	}
	detail("the key that authenticates the seal and every cached verdict is sealed in the TPM, at trust generation 1")

	// 8. containerd.
	if err := d.check(); err != nil {
		return err
	}
	d.say("Starting containerd with runc (NRI on, its own root, state and sockets under %s)", filepath.Join(dir, "node"))
	started := time.Now()
	n.ctrd, err = testenv.StartContainerd(testenv.ContainerdOptions{
		Dir:          filepath.Join(dir, "node"),
		HostsDir:     hostsDir,
		SandboxImage: im.sandbox.String(),
		// As install/ configures a real node: no container is created
		// while sealgate is not connected.
		RequiredPlugins: []string{"sealgate"},
	})
	if err != nil {
		return err
	}
	d.onTeardown(func() {
		if err := n.ctrd.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "        stopping containerd: %v\n", err)
		} else {
			detail("pods removed, containerd stopped, mounts gone")
		}
	})
	n.socket = filepath.Join(n.ctrd.Dir, "gate.sock")
	detail("ready in %v; NRI's validator requires the plugin \"sealgate\": until it connects, no container can be created", time.Since(started).Round(10*time.Millisecond))

	// 9. sealgate.
	if err := d.check(); err != nil {
		return err
	}
	d.say("Starting sealgate: it checks the trust store against the TPM, then connects to containerd")
	sg, err := n.start("first")
	if err != nil {
		return err
	}
	detail("%s", sg.line("trust store verified against the TPM"))
	detail("connected: containerd now asks sealgate before creating any container (log: %s)", sg.logPath)

	// 10 and 11. The signed and the unsigned image.
	if err := n.mustRun(reg.Ref("demo/signed:v1"), "signed", "Running the signed image (crictl: pull, pod, create, start)"); err != nil {
		return err
	}
	if err := n.mustRefuse(reg.Ref("demo/unsigned:v1"), "unsigned", im.unsigned.DigestStr(), "Running the unsigned image the same way"); err != nil {
		return err
	}

	// 12. A key swapped behind sealgate's back.
	if sg, err = n.tamper(sg, pubPEM, cosign); err != nil {
		return err
	}
	// 13. A key rotated in with a re-seal, live.
	if err := n.rotate(sg, reg, cosign); err != nil {
		return err
	}
	// 14. Offline.
	return n.offline(sg, reg)
}

// tamper swaps the release key for an attacker's while sealgate runs: the
// running sealgate refuses the change, and a restart refuses to start,
// naming the file. The key restored, sealgate starts again.
func (n *node) tamper(sg *proc, good []byte, cosign *testenv.Cosign) (*proc, error) {
	d := n.d
	if err := d.check(); err != nil {
		return nil, err
	}
	d.say("Replacing keys/release.pub with an attacker's key, behind sealgate's back")
	_, evil, err := cosign.GenerateKeyPair("attacker")
	if err != nil {
		return nil, err
	}
	evilPEM, err := os.ReadFile(evil)
	if err != nil {
		return nil, err
	}
	key := filepath.Join(n.trustDir, "keys", "release.pub")
	if err := os.WriteFile(key, evilPEM, 0o644); err != nil {
		return nil, err
	}
	line, err := sg.wait(10*time.Second, "RELOAD REFUSED")
	if err != nil {
		return nil, err
	}
	detail("the running sealgate saw the change and refused it; the sealed policy keeps deciding:")
	detail("%s", clip(line))
	sg.stop()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, n.bin, n.runArgs()...).CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "keys/release.pub was changed") {
		return nil, fmt.Errorf("sealgate should refuse to start on the swapped key, naming it, but: %v\n%s", err, out)
	}
	detail("restarted, sealgate refuses to start and says why (and the node creates no container meanwhile):")
	detail("%s", clip(lastLine(string(out), "cannot start")))
	if err := os.WriteFile(key, good, 0o644); err != nil {
		return nil, err
	}
	sg, err = n.start("after-restore")
	if err != nil {
		return nil, err
	}
	detail("the sealed key put back: sealgate starts again")
	return sg, nil
}

// rotate signs a new image with a new key, adds the key to the policy and
// seals: the running sealgate takes it without a restart.
func (n *node) rotate(sg *proc, reg *testenv.Registry, cosign *testenv.Cosign) error {
	d := n.d
	if err := d.check(); err != nil {
		return err
	}
	d.say("Rotating a new key in: sign a new image with it, name it in the policy, re-seal; sealgate takes it live")
	rotated, err := pushBusybox(reg, "demo/rotated:v1", "rotated", "sleep", "3600")
	if err != nil {
		return err
	}
	priv, pub, err := cosign.GenerateKeyPair("next")
	if err != nil {
		return err
	}
	if err := cosign.Sign(priv, rotated.String()); err != nil {
		return err
	}
	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(n.trustDir, "keys", "next.pub"), pubPEM); err != nil {
		return err
	}
	polPath := filepath.Join(n.trustDir, "policy.yaml")
	pol, err := os.ReadFile(polPath)
	if err != nil {
		return err
	}
	next := strings.Replace(string(pol), "        - key: keys/release.pub\n", "        - key: keys/release.pub\n        - key: keys/next.pub\n", 1)
	if err := os.WriteFile(polPath, []byte(next), 0o644); err != nil {
		return err
	}
	detail("policy: demo-apps now accepts keys/release.pub or keys/next.pub")
	out, err := n.sealgate("trust", "seal", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec, "--gate-socket", n.socket)
	if err != nil || !strings.Contains(out, "now enforces generation 2") {
		return fmt.Errorf("the re-seal should be taken live, but: %v\n%s\nsealgate log:\n%s", err, out, tail(sg.logPath, 20))
	}
	detail("$ sealgate trust seal | %s", lastLine(out, "now enforces"))
	id, out, err := n.ctrd.Run(reg.Ref("demo/rotated:v1"), "rotated", "default")
	if err != nil {
		return fmt.Errorf("the image signed with the rotated-in key should run, but: %w\n%s\nsealgate log:\n%s", err, out, tail(sg.logPath, 20))
	}
	detail("the image signed only by the new key runs (container %s); no restart, containerd's connection kept", id[:12])
	if _, out, err := n.ctrd.Run(reg.Ref("demo/signed:v1"), "signed-gen2", "default"); err != nil {
		return fmt.Errorf("the image signed by the release key should still run: %w\n%s", err, out)
	}
	detail("the release-signed image still runs too, verified again under generation 2")
	return nil
}

// offline stops sealgate, pulls an image it never verified, stops the
// registry and starts sealgate again: the image verified before still runs
// from its TPM-authenticated verdict; the other is refused.
func (n *node) offline(sg *proc, reg *testenv.Registry) error {
	d := n.d
	if err := d.check(); err != nil {
		return err
	}
	d.say("Going offline: stop sealgate, pull a signed image it never verified, stop the registry, start sealgate")
	second, err := pushBusybox(reg, "demo/unverified:v1", "unverified", "sleep", "3600")
	if err != nil {
		return err
	}
	sg.stop()
	if err := n.ctrd.Pull(reg.Ref("demo/unverified:v1")); err != nil {
		return err
	}
	if err := reg.Stop(); err != nil {
		return err
	}
	detail("registry stopped: no signature can be fetched")
	sg, err = n.start("offline")
	if err != nil {
		return err
	}
	if _, out, err := n.ctrd.Run(reg.Ref("demo/signed:v1"), "signed-offline", "default"); err != nil {
		return fmt.Errorf("the verified image should run from its cached verdict, but: %w\n%s\nsealgate log:\n%s", err, out, tail(sg.logPath, 20))
	}
	line, err := sg.wait(5*time.Second, "source=offline-cache", "digest="+n.signed)
	if err != nil {
		return err
	}
	detail("the verified image runs: its verdict, authenticated with the key sealed in the TPM, decides offline")
	detail("%s", clip(line))
	_, out, err := n.ctrd.Run(reg.Ref("demo/unverified:v1"), "unverified", "default")
	if err == nil {
		return fmt.Errorf("an image never verified ran while its signatures could not be fetched:\n%s", out)
	}
	msg := denial(out)
	if !strings.Contains(msg, second.DigestStr()) {
		return fmt.Errorf("the never-verified image failed, but not with sealgate's refusal:\n%s", out)
	}
	detail("the never-verified image is refused: %s", clip(msg))
	return nil
}

// mustRun is a step: image runs.
func (n *node) mustRun(image, podName, title string) error {
	if err := n.d.check(); err != nil {
		return err
	}
	n.d.say("%s", title)
	id, out, err := n.ctrd.Run(image, podName, "default")
	if err != nil {
		return fmt.Errorf("%s should run, but: %w\n%s", image, err, out)
	}
	state, err := n.ctrd.ContainerState(id)
	if err != nil {
		return err
	}
	if state != "CONTAINER_RUNNING" {
		return fmt.Errorf("%s is %s, want CONTAINER_RUNNING", image, state)
	}
	detail("container %s is %s", id[:12], state)
	return nil
}

// mustRefuse is a step: image is refused by sealgate, naming digest.
func (n *node) mustRefuse(image, podName, digest, title string) error {
	if err := n.d.check(); err != nil {
		return err
	}
	n.d.say("%s", title)
	id, out, err := n.ctrd.Run(image, podName, "default")
	if err == nil {
		return fmt.Errorf("%s was NOT refused: container %s was created\n%s", image, id, out)
	}
	msg := denial(out)
	if msg == "" || !strings.Contains(msg, digest) {
		return fmt.Errorf("%s failed, but not with sealgate's refusal naming its digest:\n%s", image, out)
	}
	detail("refused. containerd's answer to crictl carries sealgate's reason:")
	detail("%s", msg)
	return nil
}

// sealgate runs one sealgate command.
func (n *node) sealgate(args ...string) (string, error) {
	out, err := exec.CommandContext(n.d.ctx, n.bin, args...).CombinedOutput()
	return string(out), err
}

func (n *node) runArgs() []string {
	return []string{"run", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec, "--state-dir", n.stateDir,
		"--nri-socket", n.ctrd.NRISocket, "--containerd-address", n.ctrd.Address, "--containerd-namespace", "k8s.io",
		"--registry-hosts-dir", n.hostsDir, "--gate-socket", n.socket}
}

// proc is a running sealgate.
type proc struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// start starts sealgate and waits until containerd has it connected.
func (n *node) start(name string) (*proc, error) {
	p := &proc{exited: make(chan struct{}), logPath: filepath.Join(filepath.Dir(n.stateDir), "sealgate-"+name+".log")}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	p.cmd = exec.Command(n.bin, n.runArgs()...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// Its own process group: Ctrl-C reaches the demo, which stops sealgate
	// in order during the teardown.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	n.d.onTeardown(p.stop)
	if err := waitRegistered(n.ctrd, p.exited, p.logPath); err != nil {
		return nil, err
	}
	return p, nil
}

// stop stops sealgate (SIGTERM: it flushes its verdicts) and waits.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	detail("sealgate stopped")
}

// wait returns the last log line containing every part of want.
func (p *proc) wait(timeout time.Duration, want ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l := p.line(want...); l != "" {
			return l, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("sealgate did not log %q within %v:\n%s", want, timeout, tail(p.logPath, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// line is the last log line containing every part of want, or "".
func (p *proc) line(want ...string) string {
	b, _ := os.ReadFile(p.logPath)
	return lastLine(string(b), want...)
}

// lastLine is the last line of text containing every part of want, or "".
func lastLine(text string, want ...string) string {
	lines := strings.Split(text, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		all := true
		for _, w := range want {
			all = all && strings.Contains(lines[i], w)
		}
		if all {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}

// clip keeps a log line readable on a terminal.
func clip(s string) string {
	if len(s) > 400 {
		return s[:400] + " …"
	}
	return s
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
