//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
)

// verdict is the part of `sealgate verify --output json` that scripts rely
// on (DESIGN.md section 5).
type verdict struct {
	Image   string   `json:"image"`
	Digest  string   `json:"digest"`
	Allowed bool     `json:"allowed"`
	Rule    string   `json:"rule"`
	Mode    string   `json:"mode"`
	Reasons []string `json:"reasons"`
	Source  string   `json:"source"`
}

// TestVerifyCommand runs `sealgate verify` against the fixture's registry
// and checks the exit codes and the JSON every script parses.
func TestVerifyCommand(t *testing.T) {
	f := newFixture(t)
	bin := testenv.BuildSealgate(t)
	badPolicy := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, badPolicy, "mode: enforce\ndefault: deny\nrulez: []\n")
	other := pushBusybox(t, f.reg, "other/app:v1", "other", "sleep", "1")

	run := func(t *testing.T, args ...string) (int, []byte, []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"verify"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, stdout.Bytes(), stderr.Bytes()
		case errors.As(err, &exit):
			return exit.ExitCode(), stdout.Bytes(), stderr.Bytes()
		}
		t.Fatalf("sealgate verify: %v", err)
		return 0, nil, nil
	}
	common := []string{"--policy", f.policy, "--registry-hosts-dir", f.hostsDir}

	jsonCases := []struct {
		name     string
		ref      string
		wantExit int
		want     verdict // Image is checked to contain the repository
		reasons  bool    // whether reasons must be non-empty
	}{
		{"signed", f.signed.String(), 0, verdict{Digest: f.signed.DigestStr(), Allowed: true, Rule: ruleApps, Mode: "enforce", Source: "verified"}, false},
		{"unsigned", f.unsigned.String(), 1, verdict{Digest: f.unsigned.DigestStr(), Allowed: false, Rule: ruleApps, Mode: "enforce"}, true},
		{"allowed without signatures", f.sandbox.String(), 0, verdict{Digest: f.sandbox.DigestStr(), Allowed: true, Rule: ruleSandbox, Mode: "enforce"}, false},
		{"no rule matches: default deny", other.String(), 1, verdict{Digest: other.DigestStr(), Allowed: false, Mode: "enforce"}, true},
	}
	for _, tt := range jsonCases {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, append([]string{tt.ref, "--output", "json"}, common...)...)
			if code != tt.wantExit {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantExit, stdout, stderr)
			}
			var got verdict
			dec := json.NewDecoder(bytes.NewReader(stdout))
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(stdout, &raw); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"image", "digest", "allowed", "rule", "mode", "reasons", "source"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("JSON lacks %q: %s", k, stdout)
				}
			}
			repo := tt.ref[:strings.IndexByte(tt.ref, '@')]
			if !strings.Contains(got.Image, repo) {
				t.Errorf("image = %q, want it to name %s", got.Image, repo)
			}
			if got.Digest != tt.want.Digest || got.Allowed != tt.want.Allowed || got.Mode != tt.want.Mode {
				t.Errorf("got digest=%s allowed=%v mode=%s, want digest=%s allowed=%v mode=%s",
					got.Digest, got.Allowed, got.Mode, tt.want.Digest, tt.want.Allowed, tt.want.Mode)
			}
			if tt.want.Rule != "" && got.Rule != tt.want.Rule {
				t.Errorf("rule = %q, want %q", got.Rule, tt.want.Rule)
			}
			if tt.want.Source != "" && got.Source != tt.want.Source {
				t.Errorf("source = %q, want %q", got.Source, tt.want.Source)
			}
			if tt.reasons && len(got.Reasons) == 0 {
				t.Errorf("a denial without reasons: %s", stdout)
			}
		})
	}

	t.Run("text output", func(t *testing.T) {
		code, stdout, stderr := run(t, append([]string{f.unsigned.String()}, common...)...)
		if code != 1 {
			t.Errorf("exit %d, want 1\n%s%s", code, stdout, stderr)
		}
		if miss := missing(string(stdout), "sealgate: denied", f.unsigned.DigestStr(), "(rule "+ruleApps+")"); len(miss) > 0 {
			t.Errorf("text output lacks %q:\n%s", miss, stdout)
		}
	})

	t.Run("two images and a tag", func(t *testing.T) {
		// Several images are decided in one call (1: one is denied); a
		// tag is resolved at the registry and the digest said.
		code, stdout, stderr := run(t, append([]string{f.signed.String(), f.unsigned.String()}, common...)...)
		if code != 1 || !strings.Contains(string(stdout), "sealgate: allowed") || !strings.Contains(string(stdout), "sealgate: denied") {
			t.Errorf("two images: exit %d\n%s%s", code, stdout, stderr)
		}
		code, stdout, stderr = run(t, append([]string{f.signedTag}, common...)...)
		if code != 0 || !strings.Contains(string(stdout), "resolved "+f.signedTag+" to "+f.signed.DigestStr()) {
			t.Errorf("tag: exit %d\n%s%s", code, stdout, stderr)
		}
	})

	usage := []struct {
		name string
		args []string
	}{
		{"no image", common},
		{"--digest with two images", append([]string{f.signed.String(), f.unsigned.String(), "--digest", f.signed.DigestStr()}, common...)},
		{"malformed digest", append([]string{f.signed.Context().String() + "@sha256:12"}, common...)},
		{"missing policy", []string{f.signed.String(), "--policy", filepath.Join(t.TempDir(), "none.yaml"), "--registry-hosts-dir", f.hostsDir}},
		{"policy with unknown key", []string{f.signed.String(), "--policy", badPolicy, "--registry-hosts-dir", f.hostsDir}},
		{"bad output format", append([]string{f.signed.String(), "--output", "yaml"}, common...)},
		{"unknown flag", append([]string{f.signed.String(), "--no-such-flag"}, common...)},
	}
	for _, tt := range usage {
		t.Run("usage/"+tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
		})
	}
	t.Run("usage/policy error names the key", func(t *testing.T) {
		_, _, stderr := run(t, f.signed.String(), "--policy", badPolicy, "--registry-hosts-dir", f.hostsDir)
		if miss := missing(string(stderr), "rulez"); len(miss) > 0 {
			t.Errorf("stderr lacks %q:\n%s", miss, stderr)
		}
	})
}
