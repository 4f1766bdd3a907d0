package nodecheck

import (
	"os"
	"strings"
	"testing"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/sealgate/sealgate/runtimegate"
)

// TestConfigChecks reads the installed node's effective config and
// variations of it; each variation that lets an unverified container run
// fails the check it concerns, and names the fix.
func TestConfigChecks(t *testing.T) {
	base, err := os.ReadFile("testdata/installed.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{PluginName: "sealgate", GateBinary: "sealgate-runc", EscapeAnnotation: runtimegate.EscapeAnnotation}
	tests := []struct {
		name      string
		from, to  string
		extra     string
		deadline  string
		failCheck string // "" for none
		fix       string
	}{
		{name: "installed", deadline: "1.5s"},
		{name: "NRI off", from: "disable = false", to: "disable = true", failCheck: "NRI enabled", fix: "install sealgate's drop-in"},
		{name: "no connections", from: "disable_connections = false", to: "disable_connections = true", failCheck: "NRI enabled", fix: "disable_connections = false"},
		{name: "validator off", from: "enable = true", to: "enable = false", failCheck: "required_plugins", fix: "required_plugins = ['sealgate']"},
		{name: "sealgate not required", from: "required_plugins = ['sealgate']", to: "required_plugins = ['other']", failCheck: "required_plugins", fix: "add 'sealgate'"},
		{name: "deadline over the timeout", deadline: "2s", failCheck: "request timeout", fix: "lower sealgate's --deadline"},
		{name: "runc directly", from: "BinaryName = '/usr/local/bin/sealgate-runc'", to: "BinaryName = ''", failCheck: "runtime gate on runtime runc", fix: "BinaryName = '/usr/local/bin/sealgate-runc'"},
		{name: "another runc wrapper", from: "/usr/local/bin/sealgate-runc", to: "/usr/bin/nvidia-container-runtime", failCheck: "runtime gate on runtime runc", fix: "BinaryName"},
		{name: "a second runc runtime without the gate", extra: `
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.fast]
  runtime_type = 'io.containerd.runc.v2'
`, failCheck: "runtime gate on runtime fast", fix: "runtimes.fast.options"},
		{name: "a runtime that is not runc", extra: `
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata]
  runtime_type = 'io.containerd.kata.v2'
`, failCheck: "runtime gate on runtime kata", fix: "remove the runtime handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := string(base)
			if tt.from != "" {
				if !strings.Contains(text, tt.from) {
					t.Fatalf("fixture has no %q", tt.from)
				}
				text = strings.Replace(text, tt.from, tt.to, 1)
			}
			text += tt.extra
			var conf map[string]any
			if err := toml.Unmarshal([]byte(text), &conf); err != nil {
				t.Fatal(err)
			}
			r := &Report{}
			var st *runtimegate.Status
			if tt.deadline != "" {
				st = &runtimegate.Status{Deadline: tt.deadline}
			}
			checkNRIConfig(cfg, &runtimeInfo{config: conf}, st, r)
			checkRuntimeGateConfig(cfg, &runtimeInfo{config: conf}, r)
			var failed []Finding
			for _, f := range r.Findings {
				if f.Level == Fail {
					failed = append(failed, f)
				}
			}
			if tt.failCheck == "" {
				if len(failed) > 0 || !r.OK() {
					t.Fatalf("failures on the installed config: %+v", failed)
				}
				return
			}
			if len(failed) != 1 || failed[0].Check != tt.failCheck || !strings.Contains(failed[0].Fix, tt.fix) {
				t.Fatalf("failures %+v; want exactly %q with a fix naming %q", failed, tt.failCheck, tt.fix)
			}
		})
	}
}

func TestUnverifiedFails(t *testing.T) {
	r := &Report{}
	checkUnverified(&runtimegate.Status{Unverified: []runtimegate.Running{{Namespace: "default", Pod: "web", Container: "app", Image: "reg/app:1", Digest: "sha256:ab"}}}, r)
	if r.OK() || !strings.Contains(r.Findings[0].Detail, "pod default/web container app image reg/app:1@sha256:ab") {
		t.Fatalf("report %+v: want a failure naming the container", r.Findings)
	}
}
