package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ContainerdOptions configures a throw-away containerd node. The zero value
// is a node with NRI on, no required plugins and containerd's default NRI
// request timeout.
type ContainerdOptions struct {
	// Dir holds everything the node writes (root, state, sockets, the log).
	// Unix socket paths are limited to 108 bytes and containerd's shim socket
	// directory to 42, so keep it short; empty means a fresh os.MkdirTemp("", "sg-")
	// that Stop removes.
	Dir string
	// HostsDir is the certs.d directory (see WriteHostsToml) that the CRI
	// uses to reach registries; empty means containerd's defaults (https).
	HostsDir string
	// SandboxImage is the pinned sandbox (pause) image. Tests point it at a
	// busybox image in their local registry so that no pod needs the network.
	SandboxImage string
	// RequiredPlugins switches on NRI's default validator with these
	// required plugins, so that no container is created while one of them is
	// not connected. Nil leaves the validator off.
	RequiredPlugins []string
	// RequestTimeout is NRI's plugin_request_timeout (default 2s).
	RequestTimeout time.Duration
	// Imports are drop-in files containerd merges over this config, as
	// /etc/containerd/conf.d/*.toml on a node (sealgate's installed
	// drop-in, for one).
	Imports []string
	// Env is added to containerd's environment; the shims and the
	// runtime they run inherit it.
	Env []string
}

// Containerd is a real containerd 2.x + runc node running in a temporary
// directory, driven through crictl as kubelet would drive it.
type Containerd struct {
	// Dir is the node's directory; containerd's log is Dir/containerd.log.
	Dir string
	// Address is containerd's gRPC socket (also the CRI endpoint).
	Address string
	// NRISocket is where NRI plugins such as sealgate connect.
	NRISocket string

	CRI
	ownDir   bool
	runc     string
	runcRoot string
	logPath  string
	cmd      *exec.Cmd
	exited   chan struct{}
	opts     ContainerdOptions
	bins     map[string]string
	// logStart is the size of the log when containerd last started: what
	// it says about plugins since then is read from there.
	logStart int64
	stopOnce sync.Once
	stopErr  error
}

// Layout of a node's directory. The names are short on purpose: they end up
// in unix socket paths.
const (
	containerdLog = "containerd.log"
	// maxShimSocketDir is containerd's limit on the shim socket directory
	// (core/runtime/v2/socket_linux.go).
	maxShimSocketDir = 42
	// maxSocketPath keeps a margin below the 108-byte sun_path limit.
	maxSocketPath = 100
	// mntDetach is MNT_DETACH: a busy mount is detached now and freed when
	// its last user goes, so Stop never hangs on a stuck container.
	mntDetach = 0x2
)

// StartContainerd writes a config for a private containerd, starts it with
// the runc shim on its PATH and waits until the CRI answers and the NRI
// socket exists. The caller must call Stop.
func StartContainerd(opts ContainerdOptions) (*Containerd, error) {
	if opts.RequestTimeout < 0 {
		return nil, fmt.Errorf("start containerd: negative request timeout %v", opts.RequestTimeout)
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 2 * time.Second
	}
	bins := map[string]string{}
	for _, name := range []string{"containerd", "containerd-shim-runc-v2", "runc", "crictl"} {
		p, err := Tool(name)
		if err != nil {
			return nil, fmt.Errorf("start containerd: %w", err)
		}
		bins[name] = p
	}

	c := &Containerd{Dir: opts.Dir, CRI: CRI{crictl: bins["crictl"]}, runc: bins["runc"], exited: make(chan struct{}), opts: opts, bins: bins}
	if c.Dir == "" {
		d, err := os.MkdirTemp("", "sg-")
		if err != nil {
			return nil, fmt.Errorf("start containerd: %w", err)
		}
		c.Dir, c.ownDir = d, true
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	c.layout(dir)
	if n := len(c.Address + ".ttrpc"); n >= maxSocketPath {
		c.cleanupDir()
		return nil, fmt.Errorf("start containerd: dir %s is too long for unix sockets (%d bytes); use a shorter one", dir, n)
	}

	if err := c.start(opts, bins); err != nil {
		stopErr := c.Stop()
		return nil, errors.Join(fmt.Errorf("start containerd: %w", err), stopErr)
	}
	return c, nil
}

// NewContainerd starts a node for one test and stops it when the test ends,
// printing the tail of containerd's log if the test failed. It skips (or
// fails, with SEALGATE_REQUIRE_TOOLS=1) when the tools or root are missing.
func NewContainerd(t testing.TB, opts ContainerdOptions) *Containerd {
	t.Helper()
	return newNode(t, "containerd", []string{"containerd", "containerd-shim-runc-v2", "runc", "crictl"},
		func() (*Containerd, error) { return StartContainerd(opts) })
}

// layout names the node's files under dir.
func (c *Containerd) layout(dir string) {
	c.Dir = dir
	c.Address = filepath.Join(dir, "containerd.sock")
	c.NRISocket = filepath.Join(dir, "nri.sock")
	c.runcRoot = filepath.Join(dir, "runc")
	c.logPath = filepath.Join(dir, containerdLog)
	c.CRI.layout(dir, c.Address)
}

func (c *Containerd) start(opts ContainerdOptions, bins map[string]string) error {
	for _, d := range []string{"root", "state", "runc", "s", "opt", "nri/plugins", "nri/conf.d", "cni/net.d", "cni/bin", "pods", "verifiers"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return err
		}
	}
	snapshotter := "overlayfs"
	if onOverlay(c.Dir) {
		// overlayfs cannot use an overlayfs upper dir (containers in containers).
		snapshotter = "native"
	}
	cfg, err := c.config(opts, bins["runc"], snapshotter)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(c.Dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	if err := c.CRI.writeConfig(); err != nil {
		return err
	}

	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	if st, err := logf.Stat(); err == nil {
		c.logStart = st.Size()
	}

	cmd := exec.Command(bins["containerd"], "--config", cfgPath)
	cmd.Env = append(envWithPath(filepath.Dir(bins["containerd-shim-runc-v2"]), filepath.Dir(bins["runc"])), opts.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = c.Dir
	// Its own process group: a Ctrl-C meant for the test or the demo must not
	// reach containerd before Stop has removed the pods.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c.waitReady(30 * time.Second)
}

// waitReady polls the CRI until the runtime reports ready and NRI listens.
func (c *Containerd) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("containerd exited during start-up (%v); log tail:\n%s", c.cmd.ProcessState, c.LogTail(30))
		default:
		}
		if _, err := os.Stat(c.NRISocket); err != nil {
			last = "NRI socket not there yet"
		} else if out, err := c.crictlCtx(5*time.Second, "info"); err != nil {
			last = strings.TrimSpace(out)
		} else if ok, why := runtimeReady(out); !ok {
			last = why
		} else {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not ready after %v (%s); log tail:\n%s", timeout, last, c.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runtimeReady reads `crictl info` output. NetworkReady is ignored: pods
// run in the host network and no CNI is installed.
func runtimeReady(info string) (bool, string) {
	var v struct {
		Status struct {
			Conditions []struct {
				Type    string `json:"type"`
				Status  bool   `json:"status"`
				Message string `json:"message"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(info), &v); err != nil {
		return false, "crictl info: " + err.Error()
	}
	for _, cond := range v.Status.Conditions {
		if cond.Type == "RuntimeReady" {
			return cond.Status, "RuntimeReady: " + cond.Message
		}
	}
	return false, "crictl info: no RuntimeReady condition"
}

func (c *Containerd) config(opts ContainerdOptions, runc, snapshotter string) (string, error) {
	q := func(s string) string { return tomlQuote(s) }
	sandbox := opts.SandboxImage
	if sandbox == "" {
		sandbox = "registry.k8s.io/pause:3.10"
	}
	shimDir := filepath.Join(c.Dir, "s")
	if len(shimDir) > maxShimSocketDir {
		return "", fmt.Errorf("shim socket dir %s is longer than containerd's %d-byte limit; use a shorter Dir", shimDir, maxShimSocketDir)
	}
	quotedImports := make([]string, len(opts.Imports))
	for i, f := range opts.Imports {
		quotedImports[i] = q(f)
	}
	imports := strings.Join(quotedImports, ", ")
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by sealgate's testenv: a private containerd that shares nothing with the host's.
version = 3
root = %s
state = %s
imports = [%s]
oom_score = 0
disabled_plugins = [
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
]

[grpc]
  address = %s

[ttrpc]
  address = %s

[debug]
  level = 'debug'

[cgroup]
  path = ''

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = %s

  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = %s

  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = %s

  [plugins.'io.containerd.transfer.v1.local']
    config_path = %s

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = %s

    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %s

    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = %s

  [plugins.'io.containerd.cri.v1.runtime']
    # No CAP_SYS_RESOURCE in sandboxes: never lower a process's OOM score.
    restrict_oom_score_adj = true
    # AppArmor profiles need apparmor_parser and a kernel with it on; the
    # node's isolation is not what these tests exercise.
    disable_apparmor = true
    enable_unprivileged_ports = false
    enable_unprivileged_icmp = false
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    cdi_spec_dirs = []

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'

        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = %s
          Root = %s
          SystemdCgroup = false

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [%s]
      conf_dir = %s

  [plugins.'io.containerd.nri.v1.nri']
    disable = false
    socket_path = %s
    plugin_path = %s
    plugin_config_path = %s
    plugin_registration_timeout = '5s'
    plugin_request_timeout = %s
    disable_connections = false
`,
		q(filepath.Join(c.Dir, "root")), q(filepath.Join(c.Dir, "state")), imports,
		q(c.Address), q(c.Address+".ttrpc"),
		q(filepath.Join(c.Dir, "opt")), q(filepath.Join(c.Dir, "verifiers")), q(shimDir),
		q(opts.HostsDir),
		q(snapshotter), q(sandbox), q(opts.HostsDir),
		q(runc), q(c.runcRoot),
		q(filepath.Join(c.Dir, "cni/bin")), q(filepath.Join(c.Dir, "cni/net.d")),
		q(c.NRISocket), q(filepath.Join(c.Dir, "nri/plugins")), q(filepath.Join(c.Dir, "nri/conf.d")),
		q(opts.RequestTimeout.String()),
	)
	if len(opts.RequiredPlugins) > 0 {
		quoted := make([]string, len(opts.RequiredPlugins))
		for i, p := range opts.RequiredPlugins {
			quoted[i] = q(p)
		}
		fmt.Fprintf(&b, `
    [plugins.'io.containerd.nri.v1.nri'.default_validator]
      enable = true
      required_plugins = [%s]
`, strings.Join(quoted, ", "))
	}
	return b.String(), nil
}

// tomlQuote writes s as a TOML basic string.
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// envWithPath is the current environment with dirs put first on PATH, so
// containerd finds the shim and the shim finds runc.
func envWithPath(dirs ...string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	env := []string{"PATH=" + strings.Join(append(dirs, path), string(os.PathListSeparator))}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return env
}

// onOverlay reports whether dir lives on overlayfs.
func onOverlay(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false
	}
	const overlayfsMagic = 0x794c7630
	return int64(st.Type) == overlayfsMagic
}

// WaitLog waits until containerd's log contains substr. The log is
// logrus text: quotes inside a message are escaped (\").
func (c *Containerd) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(c.logPath)
		if err == nil && bytes.Contains(data, []byte(substr)) {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("wait for %q in containerd's log: containerd exited", substr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %q in containerd's log: not there after %v", substr, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitPlugin waits until NRI logs that the external plugin registered as
// name (any index) is connected and synchronized: from then on every
// container create is sent to it.
func (c *Containerd) WaitPlugin(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if pluginConnected(c.logPath, c.logStart, name) {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("wait for NRI plugin %s: containerd exited", name)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for NRI plugin %s: not connected after %v", name, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pluginConnected looks for NRI's `plugin "IDX-NAME" connected and
// synchronized` line; containerd's text log escapes the quotes.
func pluginConnected(logPath string, from int64, name string) bool {
	return pluginConnections(logPath, from, name) > 0
}

// pluginConnections counts NRI's `plugin "IDX-NAME" connected and
// synchronized` lines from offset from of the log.
func pluginConnections(logPath string, from int64, name string) int {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	if from > 0 && from <= int64(len(data)) {
		data = data[from:]
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		i := strings.Index(line, " connected and synchronized")
		if i < 0 {
			continue
		}
		quoted := strings.TrimRight(strings.ReplaceAll(line[:i], `\"`, `"`), `"`)
		if strings.HasSuffix(quoted, "-"+name) {
			n++
		}
	}
	return n
}

// PluginConnections counts how often the NRI plugin name connected since
// containerd last started: a plugin that reconnects adds one.
func (c *Containerd) PluginConnections(name string) int {
	return pluginConnections(c.logPath, c.logStart, name)
}

// LogTail returns the last n lines of containerd's log, for failure messages.
func (c *Containerd) LogTail(n int) string {
	return tailFile(c.logPath, n)
}

func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	// Bounded: the last 1 MiB holds far more than anyone reads in a failure message.
	const maxTail = 1 << 20
	if st, err := f.Stat(); err == nil && st.Size() > maxTail {
		_, _ = f.Seek(st.Size()-maxTail, 0)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), maxTail)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*n+100 {
			lines = lines[len(lines)-n:]
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ConfigPath is containerd's config file (what `containerd --config`
// reads, imports included).
func (c *Containerd) ConfigPath() string { return filepath.Join(c.Dir, "config.toml") }

// Restart stops containerd as `systemctl restart` does (SIGTERM: its
// containers and shims keep running) and starts it again with the same
// configuration, waiting until the CRI answers.
func (c *Containerd) Restart() error {
	select {
	case <-c.exited:
	default:
		c.terminate()
	}
	c.exited = make(chan struct{})
	if err := c.start(c.opts, c.bins); err != nil {
		return fmt.Errorf("restart containerd: %w", err)
	}
	return nil
}

// terminate stops the containerd process: SIGTERM, then SIGKILL after 10 s.
func (c *Containerd) terminate() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// Stop removes every pod, stops containerd, kills whatever containers and
// shims are left, unmounts everything under Dir and removes what the node
// wrote. It is safe to call more than once and on a half-started node.
func (c *Containerd) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Containerd) stop() error {
	var errs []error
	running := c.cmd != nil
	if running {
		select {
		case <-c.exited:
			running = false
		default:
		}
	}
	if running {
		// Graceful first: the shims stop their containers and unmount.
		_, _ = c.crictlCtx(30*time.Second, "rmp", "-fa")
		c.terminate()
	}
	// Whatever runc still knows of is killed and deleted.
	c.deleteRuncContainers()
	// Shims serving this node's address.
	for _, pid := range shimPIDs(c.Address) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := unmountUnder(c.Dir); err != nil {
		errs = append(errs, err)
	}
	removeCgroups(c.cgroup)
	if err := c.cleanupDir(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteRuncContainers force-deletes every container in the runc roots the
// shims used (one per containerd namespace).
func (c *Containerd) deleteRuncContainers() {
	roots, _ := filepath.Glob(filepath.Join(c.runcRoot, "*"))
	for _, root := range roots {
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = exec.CommandContext(ctx, c.runc, "--root", root, "delete", "--force", e.Name()).Run()
			cancel()
		}
	}
}

// shimPIDs finds containerd-shim processes started for address.
func shimPIDs(address string) []int {
	procs, _ := os.ReadDir("/proc")
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if (args[i] == "-address" || args[i] == "--address") && args[i+1] == address {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// mountsUnder lists the mount points at or below dir from mountinfo,
// deepest first.
func mountsUnder(mountinfo []byte, dir string) []string {
	var mps []string
	for _, line := range strings.Split(string(mountinfo), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	// Deeper first, and for the same path the later (upper) mount first.
	sort.SliceStable(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps
}

// unescapeMountinfo undoes the octal escapes (\040 for space ...) the kernel
// writes in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unmountUnder(dir string) error {
	var errs []error
	for range 3 { // stacked mounts show up again after the upper one goes
		info, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return fmt.Errorf("unmount under %s: %w", dir, err)
		}
		mps := mountsUnder(info, dir)
		if len(mps) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, mp := range mps {
			if err := syscall.Unmount(mp, mntDetach); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the (by now empty) cgroup directories the node's
// pods were placed under, in every mounted hierarchy.
func removeCgroups(parent string) {
	if parent == "" {
		return
	}
	roots := []string{"/sys/fs/cgroup"}
	if more, err := filepath.Glob("/sys/fs/cgroup/*"); err == nil {
		roots = append(roots, more...)
	}
	for _, root := range roots {
		top := filepath.Join(root, parent)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

// cleanupDir removes the node's directory if StartContainerd made it, or
// what the node wrote in a caller's directory (keeping the log and config).
func (c *Containerd) cleanupDir() error {
	if c.Dir == "" {
		return nil
	}
	if c.ownDir {
		return os.RemoveAll(c.Dir)
	}
	var errs []error
	for _, d := range []string{"root", "state", "runc", "s", "opt", "nri", "cni", "pods", "verifiers"} {
		if err := os.RemoveAll(filepath.Join(c.Dir, d)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WriteHostsToml writes dir/<registryAddr>/hosts.toml so that containerd
// (and sealgate's --registry-hosts-dir) reach registryAddr over plain HTTP,
// trying mirrors (host:port or URLs) first.
func WriteHostsToml(dir, registryAddr string, mirrors ...string) error {
	if registryAddr == "" || strings.ContainsAny(registryAddr, "/\\") {
		return fmt.Errorf("write hosts.toml: bad registry address %q", registryAddr)
	}
	withScheme := func(s string) string {
		if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
			return s
		}
		return "http://" + s
	}
	var b strings.Builder
	fmt.Fprintf(&b, "server = %s\n", tomlQuote(withScheme(registryAddr)))
	for _, m := range mirrors {
		fmt.Fprintf(&b, "\n[host.%s]\n  capabilities = [\"pull\", \"resolve\"]\n", tomlQuote(withScheme(m)))
	}
	hostDir := filepath.Join(dir, registryAddr)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return fmt.Errorf("write hosts.toml: %w", err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write hosts.toml: %w", err)
	}
	return nil
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[i+1:])
	}
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
