package testenv

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTomlQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/tmp/sg-1/root", `"/tmp/sg-1/root"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"a\nb", `"a\u000Ab"`},
		{"", `""`},
	}
	for _, tt := range tests {
		if got := tomlQuote(tt.in); got != tt.want {
			t.Errorf("tomlQuote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// mountinfoSample is the shape of /proc/self/mountinfo with a node's
// mounts: an overlay rootfs, a sandbox's shm, a path with a space (\040) and
// a look-alike directory that is not under the node.
const mountinfoSample = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
120 27 0:50 / /tmp/sg-123/state/io.containerd.grpc.v1.cri/sandboxes/abc/shm rw - tmpfs shm rw,size=65536k
121 27 0:51 / /tmp/sg-123/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw,lowerdir=/x
122 27 0:52 / /tmp/sg-123/with\040space rw - tmpfs tmpfs rw
123 27 0:53 / /tmp/sg-1234/other rw - tmpfs tmpfs rw
124 27 0:54 / /tmp/sg-123 rw - tmpfs tmpfs rw
bad line
`

func TestMountsUnder(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		want []string
	}{
		{"node mounts deepest first", "/tmp/sg-123", []string{
			"/tmp/sg-123/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
			"/tmp/sg-123/state/io.containerd.grpc.v1.cri/sandboxes/abc/shm",
			"/tmp/sg-123/with space",
			"/tmp/sg-123",
		}},
		{"prefix is not a parent", "/tmp/sg-12", nil},
		{"other node", "/tmp/sg-1234", []string{"/tmp/sg-1234/other"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mountsUnder([]byte(mountinfoSample), tt.dir)
			if !slices.Equal(got, tt.want) {
				t.Errorf("mountsUnder(%s) = %q, want %q", tt.dir, got, tt.want)
			}
		})
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	tests := []struct{ in, want string }{
		{`/a\040b`, "/a b"},
		{`/a\011b\012`, "/a\tb\n"},
		{`/a\134b`, `/a\b`},
		{`/trailing\04`, `/trailing\04`},
		{`/not\999octal`, `/not\999octal`},
		{"/plain", "/plain"},
	}
	for _, tt := range tests {
		if got := unescapeMountinfo(tt.in); got != tt.want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzMountsUnder(f *testing.F) {
	f.Add([]byte(mountinfoSample), "/tmp/sg-123")
	f.Add([]byte(`1 2 3 4 /a\040\ b`), "/a ")
	f.Add([]byte(""), "/")
	f.Fuzz(func(t *testing.T, info []byte, dir string) {
		if len(info) > 1<<16 {
			return
		}
		got := mountsUnder(info, dir)
		for i, mp := range got {
			if mp != dir && !strings.HasPrefix(mp, dir+"/") {
				t.Fatalf("mount point %q is not under %q", mp, dir)
			}
			if i > 0 && len(mp) > len(got[i-1]) {
				t.Fatalf("not deepest first: %q after %q", mp, got[i-1])
			}
		}
	})
}

func TestRuntimeReady(t *testing.T) {
	tests := []struct {
		name string
		info string
		want bool
	}{
		{"ready without network", `{"status":{"conditions":[{"type":"RuntimeReady","status":true},{"type":"NetworkReady","status":false,"message":"cni plugin not initialized"}]}}`, true},
		{"runtime not ready", `{"status":{"conditions":[{"type":"RuntimeReady","status":false,"message":"starting"}]}}`, false},
		{"no conditions", `{"status":{}}`, false},
		{"not json", `FATA[0000] connect: no such file`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := runtimeReady(tt.info)
			if got != tt.want {
				t.Errorf("runtimeReady = %v (%s), want %v", got, why, tt.want)
			}
		})
	}
}

func TestWriteHostsToml(t *testing.T) {
	dir := t.TempDir()
	if err := WriteHostsToml(dir, "127.0.0.1:5000", "127.0.0.1:5001", "https://mirror.example"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "127.0.0.1:5000", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := `server = "http://127.0.0.1:5000"

[host."http://127.0.0.1:5001"]
  capabilities = ["pull", "resolve"]

[host."https://mirror.example"]
  capabilities = ["pull", "resolve"]
`
	if string(got) != want {
		t.Errorf("hosts.toml:\n%s\nwant:\n%s", got, want)
	}
	for _, bad := range []string{"", "a/b", `a\b`} {
		if err := WriteHostsToml(dir, bad); err == nil {
			t.Errorf("WriteHostsToml(%q) succeeded, want an error", bad)
		}
	}
}

// TestContainerdConfig has the real containerd parse the config the node
// writes and checks that the settings tests depend on took effect.
func TestContainerdConfig(t *testing.T) {
	bin := RequireTool(t, "containerd")
	tests := []struct {
		name   string
		opts   ContainerdOptions
		want   []string
		absent []string
	}{
		{
			name: "validator with required plugin",
			opts: ContainerdOptions{HostsDir: "/h/certs.d", SandboxImage: "127.0.0.1:1/sandbox:v1", RequiredPlugins: []string{"sealgate"}, RequestTimeout: 1500 * time.Millisecond},
			want: []string{
				"required_plugins = ['sealgate']", "plugin_request_timeout = '1.5s'", "sandbox = '127.0.0.1:1/sandbox:v1'",
				"config_path = '/h/certs.d'", "restrict_oom_score_adj = true", "SystemdCgroup = false",
			},
		},
		{
			name:   "validator off",
			opts:   ContainerdOptions{RequestTimeout: 2 * time.Second},
			want:   []string{"plugin_request_timeout = '2s'", "required_plugins = []"},
			absent: []string{"'sealgate'"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "sg-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			c := &Containerd{}
			c.layout(dir)
			cfg, err := c.config(tt.opts, "/usr/sbin/runc", "overlayfs")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "--config", path, "config", "dump").CombinedOutput()
			if err != nil {
				t.Fatalf("containerd config dump: %v\n%s", err, out)
			}
			dump := string(out)
			for _, w := range append(tt.want, "socket_path = '"+c.NRISocket+"'", "address = '"+c.Address+"'") {
				if !strings.Contains(dump, w) {
					t.Errorf("config dump lacks %q", w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(dump, a) {
					t.Errorf("config dump has %q", a)
				}
			}
			if t.Failed() {
				t.Logf("config dump:\n%s", dump)
			}
		})
	}
}

// TestContainerdNode runs a real node: a pod and a container from a local
// registry, then checks that Stop leaves no process, mount or file behind.
func TestContainerdNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containerd")
	}
	c, reg := startTestNode(t)
	id, out, err := c.Run(reg.Ref("app:v1"), "app", "default")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	state, err := c.ContainerState(id)
	if err != nil {
		t.Fatal(err)
	}
	if state != "CONTAINER_RUNNING" {
		t.Errorf("state = %s, want CONTAINER_RUNNING", state)
	}
	ids, err := c.Containers()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ids, id) {
		t.Errorf("crictl ps -a = %q, want it to list %s", ids, id)
	}
	if len(shimPIDs(c.Address)) == 0 {
		t.Errorf("no shim found for %s", c.Address)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	assertGone(t, c)
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestContainerdStopAfterCrash: when containerd died with containers
// running, Stop still kills them, unmounts and removes everything.
func TestContainerdStopAfterCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containerd")
	}
	c, reg := startTestNode(t)
	if _, out, err := c.Run(reg.Ref("app:v1"), "app", "default"); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	if len(shimPIDs(c.Address)) == 0 {
		t.Fatalf("no shim outlived containerd; the test proves nothing")
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	assertGone(t, c)
}

// assertGone checks that a stopped node left no shim, mount or directory.
func assertGone(t *testing.T, c *Containerd) {
	t.Helper()
	if pids := shimPIDs(c.Address); len(pids) != 0 {
		t.Errorf("shims left after Stop: %v", pids)
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(info, c.Dir); len(left) != 0 {
		t.Errorf("mounts left after Stop: %q", left)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("dir %s still there after Stop (%v)", c.Dir, err)
	}
	for _, h := range []string{"memory", "pids", "cpu", ""} {
		p := filepath.Join("/sys/fs/cgroup", h, c.cgroup)
		if _, err := os.Stat(p); err == nil {
			t.Errorf("cgroup %s left after Stop", p)
		}
	}
}

// startTestNode starts a node with a registry holding a sandbox image and
// app:v1 (busybox sleeping an hour).
func startTestNode(t *testing.T) (*Containerd, *Registry) {
	t.Helper()
	reg := NewRegistry(t, RegistryOptions{})
	sandboxImg, err := BusyboxImage("sh", "-c", `trap "exit 0" TERM; while true; do sleep 1; done`)
	if errors.Is(err, ErrToolNotFound) {
		RequireTool(t, "busybox") // skips, or fails with SEALGATE_REQUIRE_TOOLS=1
	}
	if err != nil {
		t.Fatal(err)
	}
	sandbox, err := reg.Push(sandboxImg, "sandbox:v1")
	if err != nil {
		t.Fatal(err)
	}
	appImg, err := BusyboxImage("sleep", "3600")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push(appImg, "app:v1"); err != nil {
		t.Fatal(err)
	}
	hosts := t.TempDir()
	if err := WriteHostsToml(hosts, reg.Addr); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	c := NewContainerd(t, ContainerdOptions{HostsDir: hosts, SandboxImage: sandbox.String()})
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("containerd took %v to start", took)
	}
	if _, err := os.Stat(c.NRISocket); err != nil {
		t.Errorf("NRI socket: %v", err)
	}
	return c, reg
}

func TestPluginConnected(t *testing.T) {
	const registered = `time="2026-11-24T20:24:50.147Z" level=info msg="plugin \"external:10-sealgate[30795]\" registered as \"10-sealgate\" (with NRI version v0.12.5)"` + "\n"
	tests := []struct {
		name string
		log  string
		want bool
	}{
		{"connected", registered + `time="t" level=info msg="plugin \"10-sealgate\" connected and synchronized"` + "\n", true},
		{"other index", `level=info msg="plugin \"99-sealgate\" connected and synchronized"`, true},
		{"only registered", registered, false},
		{"another plugin", `level=info msg="plugin \"10-sealgate-shadow\" connected and synchronized"`, false},
		{"name suffix of another", `level=info msg="plugin \"10-notsealgate\" connected and synchronized"`, false},
		{"unescaped (json log)", `{"msg":"plugin "10-sealgate" connected and synchronized"}`, true},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "containerd.log")
			if err := os.WriteFile(path, []byte(tt.log), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := pluginConnected(path, 0, "sealgate"); got != tt.want {
				t.Errorf("pluginConnected = %v, want %v", got, tt.want)
			}
		})
	}
}
