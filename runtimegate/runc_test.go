package runtimegate

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseRuncArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    Invocation
		wantErr bool
	}{
		{
			name: "shim create (go-runc)",
			args: []string{"--root", "/run/containerd/runc/k8s.io", "--log", "/b/log.json", "--log-format", "json", "--systemd-cgroup",
				"create", "--bundle", "/b", "--pid-file", "/b/init.pid", "--console-socket", "/tmp/c.sock", "abc123"},
			want: Invocation{Command: "create", Bundle: "/b", ID: "abc123", Log: "/b/log.json", LogFormat: "json"},
		},
		{
			name: "equals forms and short bundle",
			args: []string{"--root=/r", "--log=/l", "--log-format=json", "create", "-b", "/b2", "--no-pivot", "id2"},
			want: Invocation{Command: "create", Bundle: "/b2", ID: "id2", Log: "/l", LogFormat: "json"},
		},
		{
			name: "bundle with equals",
			args: []string{"run", "--bundle=/b3", "-d", "id3"},
			want: Invocation{Command: "run", Bundle: "/b3", ID: "id3", LogFormat: "text"},
		},
		{
			name: "default bundle is the working directory",
			args: []string{"create", "id4"},
			want: Invocation{Command: "create", Bundle: ".", ID: "id4", LogFormat: "text"},
		},
		{
			name: "restore creates a container too",
			args: []string{"restore", "--image-path", "/img", "--bundle", "/b5", "id5"},
			want: Invocation{Command: "restore", Bundle: "/b5", ID: "id5", LogFormat: "text"},
		},
		{
			name: "other commands pass",
			args: []string{"--root", "/r", "delete", "--force", "x"},
			want: Invocation{Command: "delete", LogFormat: "text"},
		},
		{
			name: "version",
			args: []string{"--version"},
			want: Invocation{LogFormat: "text"},
		},
		{name: "create without ID", args: []string{"create", "--bundle", "/b"}, wantErr: true},
		{name: "create with dangling bundle flag", args: []string{"create", "--bundle"}, wantErr: true},
		{name: "unknown global flag before create", args: []string{"--new-flag", "v", "create", "--bundle", "/b", "x"}, wantErr: true},
		{name: "unknown global flag before state", args: []string{"--new-flag", "v", "state", "x"}, want: Invocation{LogFormat: "text"}},
		{name: "global flag without value", args: []string{"--root"}, wantErr: true},
		{name: "flag as ID", args: []string{"create", "--bundle", "/b", "--no-pivot"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRuncArgs(tt.args)
			if tt.wantErr {
				if !errors.Is(err, ErrCommandLine) {
					t.Fatalf("ParseRuncArgs(%q) = %+v, %v; want ErrCommandLine", tt.args, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRuncArgs(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRuncArgs(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestEscaped(t *testing.T) {
	tests := []struct {
		name string
		ann  map[string]string
		want bool
	}{
		{"none", map[string]string{}, false},
		{"pod", map[string]string{EscapeAnnotation: "true"}, true},
		{"pod key", map[string]string{EscapeAnnotation + "/pod": "true"}, true},
		{"this container", map[string]string{EscapeAnnotation + "/container.web": "true", AnnotationContainerName: "web"}, true},
		{"another container", map[string]string{EscapeAnnotation + "/container.db": "true", AnnotationContainerName: "web"}, false},
		{"container overrides pod", map[string]string{EscapeAnnotation: "true", EscapeAnnotation + "/container.web": "false", AnnotationContainerName: "web"}, false},
		{"not a boolean", map[string]string{EscapeAnnotation: "yes please"}, false},
		{"false", map[string]string{EscapeAnnotation: "false"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Escaped(tt.ann); got != tt.want {
				t.Errorf("Escaped(%v) = %v, want %v", tt.ann, got, tt.want)
			}
		})
	}
}

// TestDecideHookState: the hook refuses a state it cannot read (not JSON,
// duplicate keys, no ID or bundle, too long) and otherwise asks as the
// wrapper does: here no daemon answers, so the creation is refused with
// the wrapper's reason.
func TestDecideHookState(t *testing.T) {
	bundle := t.TempDir()
	spec := `{"annotations":{"io.kubernetes.cri-o.ContainerType":"container","io.kubernetes.cri-o.SandboxID":"s1","io.kubernetes.cri-o.Image":"r.example/app:v1"}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	g := Gate{Socket: filepath.Join(t.TempDir(), "none.sock"), Timeout: time.Second}
	tests := []struct{ name, state, want string }{
		{"not JSON", `{"id":`, "the runtime's state for the hook"},
		{"duplicate key", `{"id":"a","id":"b","bundle":"` + bundle + `"}`, "the runtime's state for the hook"},
		{"no bundle", `{"id":"c1"}`, "names no container and bundle"},
		{"too long", `{"id":"c1","pad":"` + strings.Repeat("x", HookStateLimit) + `"}`, "longer than"},
		{"no daemon", `{"ociVersion":"1.2.0","id":"c1","status":"creating","bundle":"` + bundle + `"}`, "refused container c1 (image r.example/app:v1)"},
	}
	for _, tc := range tests {
		v := g.DecideHook([]byte(tc.state))
		if v.Allowed || !strings.Contains(v.Message, tc.want) {
			t.Errorf("%s: %+v, want a refusal with %q", tc.name, v, tc.want)
		}
	}
}
