package main

import (
	"debug/buildinfo"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/tpm/tpmtest"
)

func TestTrustIsACommand(t *testing.T) {
	code, stdout, _ := runMain("trust", "--help")
	if code != exitOK || !strings.Contains(stdout, "sealgate trust [command]") {
		t.Fatalf("`sealgate trust --help`: exit %d, %q (is trust in commands()?)", code, stdout)
	}
}

func TestTrustUsageErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"trust"}, "Usage:\n  sealgate trust"},
		{"unknown subcommand", []string{"trust", "open"}, `unknown subcommand "open"`},
		{"init without DIR", []string{"trust", "init"}, "give exactly one DIR"},
		{"init with two DIRs", []string{"trust", "init", dir, dir}, "give exactly one DIR"},
		{"seal with a bad PCR list", []string{"trust", "seal", "--trust-dir", dir, "--bind-pcrs", "7,x"}, `"x" is not a PCR`},
		{"seal binding PCR 24", []string{"trust", "seal", "--trust-dir", dir, "--bind-pcrs", "24"}, `"24" is not a PCR`},
		{"seal measuring PCR 0", []string{"trust", "seal", "--trust-dir", dir, "--measure-pcr", "0"}, "PCR 0 holds the firmware's"},
		{"seal measuring PCR -2", []string{"trust", "seal", "--trust-dir", dir, "--measure-pcr", "-2"}, "--measure-pcr -2"},
		{"seal with an argument", []string{"trust", "seal", dir}, "the trust store is --trust-dir"},
		{"seal with an unknown TPM", []string{"trust", "seal", "--trust-dir", dir, "--tpm", "tpm0"}, "unknown TPM"},
		{"seal with no TPM there", []string{"trust", "seal", "--trust-dir", dir, "--tpm", "/dev/sealgate-no-such-tpm"}, "no TPM"},
		{"status with a bad output", []string{"trust", "status", "--trust-dir", dir, "--output", "yaml"}, "--output"},
		{"status with an unknown TPM", []string{"trust", "status", "--trust-dir", dir, "--tpm", "tpm0"}, "unknown TPM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runMain(tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want %q", stderr, tt.want)
			}
		})
	}
}

func TestTrustInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sealgate")
	code, stdout, stderr := runMain("trust", "init", dir)
	if code != exitOK || !strings.Contains(stdout, "sealgate trust seal --trust-dir "+dir) {
		t.Fatalf("init: exit %d, %q %q", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	// The starter policy is valid for `verify` as it is.
	code, _, stderr = runMain("verify", "--policy", filepath.Join(dir, "policy.yaml"), "--registry-hosts-dir", t.TempDir(), "registry.k8s.io/pause:3.10@sha256:"+strings.Repeat("a", 64))
	if code != exitOK {
		t.Errorf("verify pause with the starter policy: exit %d, %s", code, stderr)
	}
	code, _, stderr = runMain("trust", "init", dir)
	if code != exitUsage || !strings.Contains(stderr, "is not empty") {
		t.Errorf("init over a trust store: exit %d, %q", code, stderr)
	}
}

// TestTrustSealStatus runs init, seal and status against swtpm, which
// keeps its counter across the commands as a node's TPM does.
func TestTrustSealStatus(t *testing.T) {
	sw := tpmtest.StartSwtpm(t)
	dir := filepath.Join(t.TempDir(), "sealgate")
	state := t.TempDir()
	if code, _, stderr := runMain("trust", "init", dir); code != exitOK {
		t.Fatalf("init: %s", stderr)
	}
	status := func(want int, args ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := runMain(append([]string{"trust", "status", "--trust-dir", dir, "--tpm", sw.Spec, "--state-dir", state}, args...)...)
		if code != want {
			t.Fatalf("status: exit %d, want %d\nstdout %s\nstderr %s", code, want, stdout, stderr)
		}
		return stdout, stderr
	}

	stdout, _ := status(exitFailed)
	if !strings.Contains(stdout, "not sealed") || !strings.Contains(stdout, "run `sealgate trust seal --trust-dir "+dir+"`") {
		t.Errorf("status of an unsealed store: %s", stdout)
	}

	code, stdout, stderr := runMain("trust", "seal", "--trust-dir", dir, "--tpm", sw.Spec, "--bind-pcrs", "16")
	if code != exitOK || !strings.Contains(stdout, "sealed "+dir+" at generation 1: 1 file (the policy and the files it names)") || !strings.Contains(stdout, "the daemon measures it into PCR 23 when it takes this seal") || !strings.Contains(stdout, "bound to PCRs 16") {
		t.Fatalf("seal: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	stdout, _ = status(exitOK)
	for _, want := range []string{"sealed at generation 1", "TPM counter: 1 (matches)", "bound to PCRs 16", "authentic", "match the seal", "PCR 23", "not measured since boot; the daemon measures the trust store when it takes the seal", "ok: the daemon will start"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _ = status(exitOK, "--output", "json")
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, stdout)
	}
	if got["ok"] != true || got["generation"] != 1.0 || got["counter"] != 1.0 || got["files"] != 1.0 || got["match"] != true || got["measurement"].(map[string]any)["pcr"] != 23.0 {
		t.Errorf("status JSON: %s", stdout)
	}

	// Files the policy does not name (an editor's swap file, notes) are
	// not sealed: they change nothing.
	writeFile(t, dir, ".policy.yaml.swp", "swap")
	writeFile(t, filepath.Join(dir, "keys"), "extra.pub", "not a key")
	status(exitOK)

	// Back up the sealed store; then the policy edited: status names it,
	// exit 1.
	backup := filepath.Join(t.TempDir(), "backup")
	trustCopyDir(t, dir, backup)
	pol := filepath.Join(dir, "policy.yaml")
	good, _ := os.ReadFile(pol)
	os.WriteFile(pol, append(good, []byte("# reviewed\n")...), 0o644)
	stdout, _ = status(exitFailed)
	if !strings.Contains(stdout, "changed  policy.yaml") || !strings.Contains(stdout, "policy.yaml was changed since the trust store was sealed at generation 1; run `sealgate trust seal` to accept it") {
		t.Errorf("status after the policy was edited:\n%s", stdout)
	}
	stdout, _ = status(exitFailed, "--output", "json")
	if !strings.Contains(stdout, `"path": "policy.yaml"`) || !strings.Contains(stdout, `"ok": false`) {
		t.Errorf("status JSON after the policy was edited:\n%s", stdout)
	}

	// Seal refuses the store while the policy is invalid, and names the line.
	os.WriteFile(pol, append(good, []byte("trusted: yes\n")...), 0o644)
	code, _, stderr = runMain("trust", "seal", "--trust-dir", dir, "--tpm", sw.Spec)
	if code != exitUsage || !strings.Contains(stderr, "policy.yaml:") || !strings.Contains(stderr, "trusted") || !strings.Contains(stderr, "nothing was sealed") {
		t.Errorf("seal of an invalid policy: exit %d, %s", code, stderr)
	}
	os.WriteFile(pol, good, 0o644)

	// Re-seal accepts the store (the file that is not a key is not named,
	// so neither sealed nor parsed).
	code, stdout, stderr = runMain("trust", "seal", "--trust-dir", dir, "--tpm", sw.Spec, "--bind-pcrs", "16")
	if code != exitOK || !strings.Contains(stdout, "at generation 2: 1 file (") {
		t.Fatalf("re-seal: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, _ = status(exitOK)
	if !strings.Contains(stdout, "not measured since boot") {
		t.Errorf("status after a re-seal does not explain the PCR:\n%s", stdout)
	}

	// The store and record from before the re-seal, restored: refused.
	os.RemoveAll(dir)
	trustCopyDir(t, backup, dir)
	stdout, _ = status(exitFailed)
	if !strings.Contains(stdout, "sealed at generation 1 but the TPM counter is at 2: an older trust store or seal record was restored") || !strings.Contains(stdout, "does NOT match") {
		t.Errorf("status of a restored store:\n%s", stdout)
	}

	// After a reboot the bound PCR 16 is back at its sealed value, PCR 23
	// is empty until the daemon measures.
	sw.Restart(t)
	code, _, _ = runMain("trust", "seal", "--trust-dir", dir, "--tpm", sw.Spec, "--measure-pcr", "-1")
	if code != exitOK {
		t.Fatal("seal without measurement")
	}
	stdout, _ = status(exitOK)
	if !strings.Contains(stdout, "measurement: none") {
		t.Errorf("status of a store sealed without measurement:\n%s", stdout)
	}
}

// TestNoSimulatorInTheBinary: the in-process simulator (cgo, libcrypto)
// is for tests only: the released binary does not link it, and does not
// take "simulator" as a TPM.
func TestNoSimulatorInTheBinary(t *testing.T) {
	bi, err := buildinfo.ReadFile(testenv.BuildSealgate(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/google/go-tpm-tools" {
			t.Errorf("sealgate links %s %s (the TPM simulator)", d.Path, d.Version)
		}
	}
	dir := filepath.Join(t.TempDir(), "sealgate")
	runMain("trust", "init", dir)
	if code, _, stderr := runMain("trust", "seal", "--trust-dir", dir, "--tpm", "simulator"); code != exitUsage || !strings.Contains(stderr, "unknown TPM") {
		t.Errorf("--tpm simulator: exit %d, want 2 naming an unknown TPM:\n%s", code, stderr)
	}
}

func trustCopyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
