//go:build integration

package integration

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/tpm/tpmtest"
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
	for _, f := range []string{"opt/sg/bin/sealgate", "opt/sg/bin/sealgate-daemon", "opt/sg/bin/sealgate-runc", "etc/systemd/system/sealgate.service", "etc/containerd/conf.d/sealgate.toml"} {
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
	for _, f := range []string{"opt/sg/bin/sealgate", "opt/sg/bin/sealgate-daemon", "opt/sg/bin/sealgate-runc", "etc/systemd/system/sealgate.service", "etc/containerd/conf.d/sealgate.toml"} {
		if _, err := os.Lstat(filepath.Join(dest, f)); err == nil {
			t.Errorf("uninstall left %s", f)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/sealgate")); err != nil {
		t.Errorf("uninstall removed the trust store: %v", err)
	}
}

// TestInstallSealsAndRuns: install.sh into a temporary root with swtpm as
// the TPM, the operator's policy and key given as flags: the trust store is
// initialised, the policy checked and sealed, examples kept outside it;
// run again (an upgrade) it keeps the seal. containerd with the installed
// drop-in and sealgate started as the installed unit starts it: the signed
// image runs, the unsigned one is refused. An editor's swap file and a
// changed example in the trust store folder change nothing; a changed key
// file does. uninstall.sh leaves only the trust store and the state.
func TestInstallSealsAndRuns(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	sw := tpmtest.StartSwtpm(t)
	dest := t.TempDir()
	install := func() string {
		t.Helper()
		out, err := exec.Command("sh", filepath.Join(root, "install", "install.sh"), "--destdir", dest, "--tpm", sw.Spec,
			"--bin", testenv.BuildSealgate(t), "--gate-bin", testenv.BuildRuntimeGate(t),
			"--policy", f.policy, "--key", f.pubKey).CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	out := install()
	etc := filepath.Join(dest, "etc", "sealgate")
	bin := filepath.Join(dest, "usr", "local", "bin", "sealgate")
	status := func() (string, int) {
		t.Helper()
		return sealgateCmd(t, "trust", "status", "--trust-dir", etc, "--tpm", sw.Spec)
	}
	if st, code := status(); code != 0 || !strings.Contains(st, "generation 1") {
		t.Fatalf("after install.sh the trust store is not sealed:\n%s\ninstall.sh said:\n%s", st, out)
	}
	for _, want := range []string{"usr/local/share/sealgate/policy.example.yaml", "usr/local/share/man/man1/sealgate-trust-seal.1", "usr/local/share/bash-completion/completions/sealgate", "etc/systemd/system/sealgate-firstboot.service", "etc/sealgate/keys/release.pub", "etc/sealgate/sealed.json"} {
		if _, err := os.Stat(filepath.Join(dest, want)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(etc, "policy.example.yaml")); err == nil {
		t.Error("the example policy was put in the trust store")
	}
	// The installed units as systemd reads them (binary paths pointed at
	// this test's build, which systemd checks exist).
	analyze := testenv.RequireTool(t, "systemd-analyze")
	units := t.TempDir()
	for _, u := range []string{"sealgate.service", "sealgate-firstboot.service"} {
		text := readFile(t, filepath.Join(dest, "etc/systemd/system", u))
		writeFile(t, filepath.Join(units, u), strings.ReplaceAll(text, "/usr/local/bin/sealgate", testenv.BuildSealgate(t)))
		if out, err := exec.Command(analyze, "verify", filepath.Join(units, u)).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
		}
	}
	if out := install(); !strings.Contains(out, "seal matches its files: kept") {
		t.Errorf("a second install.sh did not keep the seal:\n%s", out)
	}
	if st, _ := status(); !strings.Contains(st, "generation 1") {
		t.Errorf("a second install.sh re-sealed:\n%s", st)
	}
	writeFile(t, filepath.Join(etc, ".policy.yaml.swp"), "swap")
	writeFile(t, filepath.Join(etc, "policy.example.yaml"), "# changed by an upgrade\n")
	if st, code := status(); code != 0 {
		t.Errorf("a swap file and an example in the trust store folder broke the seal:\n%s", st)
	}

	// containerd with the installed drop-in (the wrapper's path and socket
	// pointed into the temporary root), sealgate as the unit starts it.
	dropIn, err := os.ReadFile(filepath.Join(dest, "etc", "containerd", "conf.d", "sealgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(t.TempDir(), "sealgate.toml")
	writeFile(t, staged, strings.ReplaceAll(string(dropIn), "/usr/local/bin/sealgate-runc", filepath.Join(dest, "usr/local/bin/sealgate-runc")))
	run, err := os.MkdirTemp("", "sgi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	socket := filepath.Join(run, "gate.sock")
	c := testenv.NewContainerd(t, testenv.ContainerdOptions{HostsDir: f.hostsDir, SandboxImage: f.sandbox.String(),
		RequestTimeout: 2 * time.Second, Imports: []string{staged}, Env: []string{"SEALGATE_GATE_SOCKET=" + socket}})
	args := unitArgs(t, filepath.Join(dest, "etc", "systemd", "system", "sealgate.service"), map[string]string{
		"--trust-dir": etc, "--registry-hosts-dir": f.hostsDir, "--gate-socket": socket,
		"--nri-socket": c.NRISocket, "--containerd-address": c.Address,
	})
	if !slices.Contains(args, "--tpm") {
		t.Fatalf("the installed unit does not name the TPM it was sealed to: %v", args)
	}
	s := startSealgateWithBin(t, bin, c, append(args, "--state-dir", filepath.Join(dest, "var/lib/sealgate"))...)
	if out, code := sealgateCmd(t, "doctor", "--ready", "--gate-socket", socket, "--wait", "10s"); code != 0 {
		t.Fatalf("doctor --ready: %s", out)
	}
	if _, out, err := c.Run(f.signedTag, "signed", "default"); err != nil {
		t.Fatalf("signed image refused on the installed node: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	if _, out, err := c.Run(f.unsignedTag, "unsigned", "default"); err == nil || !strings.Contains(out, "sealgate") {
		t.Fatalf("unsigned image not refused by sealgate on the installed node: %v\n%s", err, out)
	}
	s.stop()
	// A changed key file does break the seal.
	writeFile(t, filepath.Join(etc, "keys", "release.pub"), readFile(t, f.pubKey)+"\n")
	if st, code := status(); code == 0 || !strings.Contains(st, "keys/release.pub") {
		t.Errorf("a changed key file left the seal intact:\n%s", st)
	}

	out2, err := exec.Command("sh", filepath.Join(root, "install", "uninstall.sh"), "--destdir", dest).CombinedOutput()
	if err != nil {
		t.Fatalf("uninstall.sh: %v\n%s", err, out2)
	}
	var left []string
	_ = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dest, p)
		if err != nil || d.IsDir() || strings.HasPrefix(rel, "etc/sealgate/") || strings.HasPrefix(rel, "var/lib/sealgate/") {
			return nil
		}
		left = append(left, rel)
		return nil
	})
	if len(left) > 0 {
		t.Errorf("uninstall.sh left files of sealgate's behind: %v", left)
	}
}

// unitArgs returns the arguments of the unit's ExecStart after "run", with
// the values of the flags in override replaced (paths into a test's root).
func unitArgs(t testing.TB, unit string, override map[string]string) []string {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	var exec string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "ExecStart=") {
			exec = strings.TrimPrefix(line, "ExecStart=")
		}
	}
	fields := strings.Fields(exec)
	if len(fields) < 2 || fields[1] != "run" {
		t.Fatalf("ExecStart of %s is not `sealgate run ...`: %q", unit, exec)
	}
	args := fields[2:]
	for i := 0; i+1 < len(args); i++ {
		if v, ok := override[args[i]]; ok {
			args[i+1] = v
		}
	}
	return args
}

// TestInstallStagedCRIO: install.sh --runtime crio --destdir stages CRI-O's
// drop-in and the runtime gate as an OCI hook naming the gate where it was
// installed, and a unit ordered after CRI-O; uninstall.sh removes them.
func TestInstallStagedCRIO(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	out, err := exec.Command("sh", filepath.Join(root, "install", "install.sh"), "--runtime", "crio", "--destdir", dest, "--prefix", "/opt/sg",
		"--bin", testenv.BuildSealgate(t), "--gate-bin", testenv.BuildRuntimeGate(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh --runtime crio: %v\n%s", err, out)
	}
	hook := readFile(t, filepath.Join(dest, "etc/containers/oci/hooks.d/sealgate.json"))
	for _, want := range []string{`"path": "/opt/sg/bin/sealgate-runc"`, `"createRuntime"`, `"always": true`} {
		if !strings.Contains(hook, want) {
			t.Errorf("staged hook lacks %s:\n%s", want, hook)
		}
	}
	if d := readFile(t, filepath.Join(dest, "etc/crio/crio.conf.d/10-sealgate.conf")); !strings.Contains(d, "enable_nri = true") || !strings.Contains(d, "/etc/containers/oci/hooks.d") {
		t.Errorf("staged CRI-O drop-in:\n%s", d)
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/containerd/conf.d/sealgate.toml")); err == nil {
		t.Error("containerd's drop-in staged for CRI-O")
	}
	if unit := readFile(t, filepath.Join(dest, "etc/systemd/system/sealgate.service")); !strings.Contains(unit, "After=crio.service") ||
		!strings.Contains(unit, "--registries-conf /etc/containers/registries.conf") {
		t.Errorf("the unit is not ordered after CRI-O, or does not read CRI-O's registries.conf:\n%s", unit)
	}
	if out, err := exec.Command("sh", filepath.Join(root, "install", "install.sh"), "--runtime", "docker", "--destdir", dest).CombinedOutput(); err == nil || !strings.Contains(string(out), "want containerd or crio") {
		t.Errorf("--runtime docker: %v\n%s", err, out)
	}
	out, err = exec.Command("sh", filepath.Join(root, "install", "uninstall.sh"), "--destdir", dest, "--prefix", "/opt/sg").CombinedOutput()
	if err != nil {
		t.Fatalf("uninstall.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"etc/containers/oci/hooks.d/sealgate.json", "etc/crio/crio.conf.d/10-sealgate.conf"} {
		if _, err := os.Lstat(filepath.Join(dest, f)); err == nil {
			t.Errorf("uninstall left %s", f)
		}
	}
}
