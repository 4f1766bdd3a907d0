// Command demo is `make demo`: it builds a throw-away node on this machine —
// a registry on 127.0.0.1, containerd with runc, swtpm as the node's TPM,
// sealgate as containerd's NRI plugin — and shows what sealgate does: a
// signed image runs and an unsigned one is refused; a key swapped behind
// sealgate's back is refused live and at restart, naming the file; a key
// rotated in with a re-seal takes effect without a restart; and with the
// registry gone and sealgate restarted, the verified image still runs from
// its TPM-authenticated verdict while a never-verified one is refused.
// Everything lives in one temporary directory and is torn down at the end,
// on error and on Ctrl-C. It exits non-zero when an outcome is not the
// expected one.
//
// It needs root (containerd and runc create mounts and cgroups) and the
// tools `make tools` installs: containerd, containerd-shim-runc-v2, crictl,
// cosign, plus runc, busybox-static and swtpm from Debian.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/sealgate/sealgate/internal/testenv"
)

func main() {
	os.Exit(run())
}

// demo holds what has to be torn down, in reverse order.
type demo struct {
	ctx      context.Context
	step     int
	teardown []func()
}

const steps = 14

func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Printf("\n[%d/%d] %s\n", d.step, steps, fmt.Sprintf(format, args...))
}

func detail(format string, args ...any) {
	fmt.Printf("        %s\n", fmt.Sprintf(format, args...))
}

func (d *demo) onTeardown(f func()) { d.teardown = append(d.teardown, f) }

// check stops the demo between steps once Ctrl-C was pressed.
func (d *demo) check() error {
	if err := d.ctx.Err(); err != nil {
		return errors.New("interrupted")
	}
	return nil
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{ctx: ctx}

	fmt.Println("sealgate demo: a container node whose TPM anchors which images may run.")
	if err := preflight(); err != nil {
		fmt.Fprintf(os.Stderr, "\ncannot run the demo: %v\n", err)
		return 2
	}

	err := d.run()
	fmt.Println("\nTearing everything down (pods, containerd, sealgate, registry, temporary files) ...")
	for i := len(d.teardown) - 1; i >= 0; i-- {
		d.teardown[i]()
	}
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "\nInterrupted; everything was torn down.")
		return 130
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nDEMO FAILED: %v\n", err)
		return 1
	}
	fmt.Println("\nResult: every step as expected. Signed images ran, unsigned and never-verified ones were refused; the trust store sealed in the TPM")
	fmt.Println("refused a key swapped behind sealgate's back, took a re-seal live, and its verdicts kept the node running offline.")
	return 0
}

// preflight says in plain words what is missing before anything starts.
func preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("it needs root: containerd and runc create mounts and cgroups (try: sudo make demo)")
	}
	var missing []string
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "runc", "crictl", "cosign", "swtpm", "go"} {
		if _, err := testenv.Tool(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat(testenv.BusyboxPath); err != nil {
		missing = append(missing, "busybox-static ("+testenv.BusyboxPath+")")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s; run `make tools` (and apt-get install runc busybox-static swtpm)", strings.Join(missing, ", "))
	}
	return nil
}

func (d *demo) run() error {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return fmt.Errorf("run the demo from inside the sealgate repository: %w", err)
	}

	// 1. A temporary directory for everything.
	dir, err := os.MkdirTemp("", "sg-demo-")
	if err != nil {
		return err
	}
	d.onTeardown(func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "        could not remove %s: %v\n", dir, err)
		} else {
			detail("removed %s", dir)
		}
	})
	d.say("Making a temporary directory for the whole node: %s", dir)

	// 2. The registry.
	if err := d.check(); err != nil {
		return err
	}
	reg, err := testenv.StartRegistry(testenv.RegistryOptions{})
	if err != nil {
		return fmt.Errorf("start the registry: %w", err)
	}
	d.onTeardown(func() { _ = reg.Close(); detail("registry stopped") })
	d.say("Starting a container registry on %s (plain HTTP, loopback only)", reg.Addr)
	hostsDir := filepath.Join(dir, "certs.d")
	if err := testenv.WriteHostsToml(hostsDir, reg.Addr); err != nil {
		return err
	}
	detail("containerd and sealgate reach it through %s", filepath.Join(hostsDir, reg.Addr, "hosts.toml"))

	// 3. Images.
	if err := d.check(); err != nil {
		return err
	}
	d.say("Building two busybox images that run `sleep 3600`, plus a pod sandbox image, and pushing them")
	sandbox, err := pushBusybox(reg, "sandbox:v1", "", "sh", "-c", `trap "exit 0" TERM; while true; do sleep 1; done`)
	if err != nil {
		return err
	}
	signed, err := pushBusybox(reg, "demo/signed:v1", "signed", "sleep", "3600")
	if err != nil {
		return err
	}
	unsigned, err := pushBusybox(reg, "demo/unsigned:v1", "unsigned", "sleep", "3600")
	if err != nil {
		return err
	}
	detail("image to sign:  %s", signed)
	detail("left unsigned:  %s", unsigned)
	detail("pod sandbox:    %s", sandbox)

	// 4. A key.
	if err := d.check(); err != nil {
		return err
	}
	cosignBin, _ := testenv.Tool("cosign")
	cosign := &testenv.Cosign{Bin: cosignBin, Dir: filepath.Join(dir, "cosign")}
	if err := os.MkdirAll(cosign.Dir, 0o700); err != nil {
		return err
	}
	d.say("Generating a cosign key pair (no password, offline)")
	priv, pub, err := cosign.GenerateKeyPair("release")
	if err != nil {
		return err
	}
	detail("private key: %s", priv)
	detail("public key:  %s", pub)

	// 5. The signature.
	if err := d.check(); err != nil {
		return err
	}
	d.say("Signing the first image by digest with the private key (cosign sign --tlog-upload=false)")
	if err := cosign.Sign(priv, signed.String()); err != nil {
		return err
	}
	detail("the signature is in the registry next to the image (tag %s.sig)", strings.Replace(signed.DigestStr(), ":", "-", 1))

	return d.sealedNode(root, dir, reg, hostsDir, cosign, priv, pub, images{sandbox: sandbox, signed: signed, unsigned: unsigned})
}

// waitRegistered waits until containerd's NRI reports sealgate connected.
func waitRegistered(node *testenv.Containerd, exited <-chan struct{}, logPath string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("sealgate exited before connecting:\n%s", tail(logPath, 20))
		default:
		}
		if node.WaitPlugin("sealgate", 200*time.Millisecond) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sealgate did not connect to containerd within 20s\nsealgate log:\n%s\ncontainerd log:\n%s", tail(logPath, 20), node.LogTail(20))
		}
	}
}

// denial extracts sealgate's message from crictl's output: its last line
// is `level=fatal msg="creating container: ... sealgate: denied ..."`.
func denial(out string) string {
	i := strings.LastIndex(out, "sealgate: denied")
	if i < 0 {
		return ""
	}
	msg := out[i:]
	if j := strings.IndexByte(msg, '\n'); j >= 0 {
		msg = msg[:j]
	}
	msg = strings.TrimSuffix(strings.TrimSpace(msg), `"`)
	return strings.ReplaceAll(msg, `\"`, `"`)
}

func pushBusybox(reg *testenv.Registry, repoTag, variant string, cmd ...string) (name.Digest, error) {
	img, err := testenv.BusyboxImage(cmd...)
	if err != nil {
		return name.Digest{}, err
	}
	if variant != "" {
		if img, err = withLabel(img, "dev.sealgate.demo.variant", variant); err != nil {
			return name.Digest{}, err
		}
	}
	return reg.Push(img, repoTag)
}

func withLabel(img v1.Image, key, value string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg := *cf.Config.DeepCopy()
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels[key] = value
	return mutate.Config(img, cfg)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
