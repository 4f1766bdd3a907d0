package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/runtimegate"
)

// CRIOOptions configure a CRI-O node.
type CRIOOptions struct {
	// Dir is the node's directory; empty: a new temporary one, removed by
	// Stop.
	Dir string
	// PauseImage is CRI-O's pause (infra) image.
	PauseImage string
	// InsecureRegistries are HOST:PORT registries reached over plain HTTP
	// (the test registries), written into registries.conf.
	InsecureRegistries []string
	// RegistriesConf, when set, is registries.conf's whole content
	// instead (mirrors, blocked registries).
	RegistriesConf string
	// RuntimeGate, when set, is sealgate-runc: CRI-O's runc runtime runs
	// it, and it runs the real runc (Runc) for what the daemon behind
	// GateSocket allows.
	RuntimeGate string
	GateSocket  string
	// HooksDir is an OCI hooks directory (hooks.d).
	HooksDir string
	// RequestTimeout is NRI's plugin request timeout (default 2s).
	RequestTimeout time.Duration
	// Env is added to CRI-O's environment and to conmon's, which the
	// runtime inherits.
	Env []string
	// DropIns are files of CRI-O's drop-in folder (ConfigDir), by name.
	DropIns map[string]string
}

// CRIO is a real CRI-O node (crio, conmon, runc, pinns) running in a
// temporary directory with its own root, runroot and sockets, vfs storage
// and the cgroupfs manager, driven through crictl. Pods use the host
// network (no CNI).
type CRIO struct {
	CRI
	// Dir is the node's directory; CRI-O's log is Dir/crio.log.
	Dir string
	// Socket is CRI-O's CRI socket.
	Socket string
	// NRISocket is where NRI plugins such as sealgate connect.
	NRISocket string
	// ConfigPath is crio.conf; ConfigDir its drop-in folder.
	ConfigPath, ConfigDir string
	// RegistriesConfPath is the registries.conf CRI-O reads.
	RegistriesConfPath string
	// Runc is what CRI-O's runc runtime ends up executing: runc itself,
	// or, without CAP_SYS_RESOURCE, the runcclamp wrapper in front of it.
	Runc string

	ownDir   bool
	logPath  string
	cmd      *exec.Cmd
	exited   chan struct{}
	opts     CRIOOptions
	bins     map[string]string
	stopOnce sync.Once
	stopErr  error
}

// crioTools are the programs a CRI-O node needs: crio and pinns (built
// from CRI-O's module by make tools), conmon and runc (Debian), crictl.
var crioTools = []string{"crio", "pinns", "conmon", "runc", "crictl"}

// StartCRIO writes a configuration for a private CRI-O, starts it and
// waits until its CRI answers and its NRI socket exists. The caller must
// call Stop.
func StartCRIO(opts CRIOOptions) (*CRIO, error) {
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 2 * time.Second
	}
	bins := map[string]string{}
	for _, name := range crioTools {
		p, err := Tool(name)
		if err != nil {
			return nil, fmt.Errorf("start CRI-O: %w", err)
		}
		bins[name] = p
	}
	c := &CRIO{Dir: opts.Dir, CRI: CRI{crictl: bins["crictl"]}, exited: make(chan struct{}), opts: opts, bins: bins, Runc: bins["runc"]}
	if !hasCapSysResource() {
		clamp, err := buildRuncClamp(bins["runc"])
		if err != nil {
			return nil, fmt.Errorf("start CRI-O: %w", err)
		}
		c.Runc = clamp
	}
	if c.Dir == "" {
		d, err := os.MkdirTemp("", "sgc-")
		if err != nil {
			return nil, fmt.Errorf("start CRI-O: %w", err)
		}
		c.Dir, c.ownDir = d, true
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("start CRI-O: %w", err)
	}
	c.Dir = dir
	c.Socket = filepath.Join(dir, "crio.sock")
	c.NRISocket = filepath.Join(dir, "nri.sock")
	c.ConfigPath, c.ConfigDir = filepath.Join(dir, "crio.conf"), filepath.Join(dir, "crio.conf.d")
	c.RegistriesConfPath = filepath.Join(dir, "registries.conf")
	c.logPath = filepath.Join(dir, "crio.log")
	c.CRI.layout(dir, c.Socket)
	if err := c.start(); err != nil {
		return nil, errors.Join(fmt.Errorf("start CRI-O: %w", err), c.Stop())
	}
	return c, nil
}

// NewCRIO starts a CRI-O node for one test and stops it when the test
// ends, printing the tail of CRI-O's log if the test failed. It skips (or
// fails, with SEALGATE_REQUIRE_TOOLS=1) when the tools or root are
// missing.
func NewCRIO(t testing.TB, opts CRIOOptions) *CRIO {
	t.Helper()
	return newNode(t, "CRI-O", crioTools, func() (*CRIO, error) { return StartCRIO(opts) })
}

// hasCapSysResource reports whether this process may lower OOM scores
// (CAP_SYS_RESOURCE, capability 24, in its effective set).
func hasCapSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var caps uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(hex), "%x", &caps); err != nil {
				return false
			}
			return caps&(1<<24) != 0
		}
	}
	return false
}

func (c *CRIO) start() error {
	for _, d := range []string{"root", "runroot", "run", "exits", "attach", "ns", "logs", "hooks", "cni", "nri/plugins", "nri/conf.d", "runc", "pods"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "policy.json"), []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`+"\n"), 0o600); err != nil {
		return err
	}
	regs := c.opts.RegistriesConf
	if regs == "" {
		var b strings.Builder
		b.WriteString("unqualified-search-registries = []\n")
		for _, r := range c.opts.InsecureRegistries {
			fmt.Fprintf(&b, "\n[[registry]]\nlocation = %s\ninsecure = true\n", tomlQuote(r))
		}
		regs = b.String()
	}
	if err := os.WriteFile(c.RegistriesConfPath, []byte(regs), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(c.ConfigPath, []byte(c.config()), 0o600); err != nil {
		return err
	}
	if err := c.CRI.writeConfig(); err != nil {
		return err
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	if err := os.MkdirAll(filepath.Join(c.Dir, "registries.conf.d"), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(c.ConfigDir, 0o700); err != nil {
		return err
	}
	for n, content := range c.opts.DropIns {
		if err := os.WriteFile(filepath.Join(c.ConfigDir, n), []byte(content), 0o600); err != nil {
			return err
		}
	}
	cmd := exec.Command(c.bins["crio"], "--config", c.ConfigPath, "--config-dir", c.ConfigDir,
		"--registries-conf", c.RegistriesConfPath, "--registries-conf-dir", filepath.Join(c.Dir, "registries.conf.d"))
	cmd.Env = append(envWithPath(filepath.Dir(c.bins["conmon"]), filepath.Dir(c.bins["runc"])),
		c.env()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c.waitReady(60 * time.Second)
}

// env is what CRI-O, conmon and the runtime get beyond PATH.
func (c *CRIO) env() []string {
	env := append([]string{}, c.opts.Env...)
	if c.opts.RuntimeGate != "" {
		env = append(env, runtimegate.RuntimeEnv+"="+c.Runc, runtimegate.SocketEnv+"="+c.opts.GateSocket)
	}
	return env
}

// config is crio.conf for the node.
func (c *CRIO) config() string {
	runtime := c.Runc
	conmonEnv := []string{"PATH=" + os.Getenv("PATH")}
	conmonEnv = append(conmonEnv, c.env()...)
	if c.opts.RuntimeGate != "" {
		runtime = c.opts.RuntimeGate
	}
	hooks := []string{filepath.Join(c.Dir, "hooks")}
	if c.opts.HooksDir != "" {
		hooks = []string{c.opts.HooksDir}
	}
	q := tomlQuote
	list := func(vs []string) string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = q(v)
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	pause := ""
	if c.opts.PauseImage != "" {
		// An empty pause_command runs the image's own entrypoint (the
		// test sandbox image is busybox, not pause).
		pause = "pause_image = " + q(c.opts.PauseImage) + "\npause_command = \"\"\n"
	}
	return fmt.Sprintf(`[crio]
root = %s
runroot = %s
storage_driver = "vfs"
log_dir = %s
version_file = %s
clean_shutdown_file = %s

[crio.api]
listen = %s

[crio.runtime]
conmon = %s
conmon_cgroup = "pod"
conmon_env = %s
cgroup_manager = "cgroupfs"
container_exits_dir = %s
container_attach_socket_dir = %s
namespaces_dir = %s
pinns_path = %s
default_runtime = "runc"
hooks_dir = %s
disable_hostport_mapping = true
drop_infra_ctr = false
log_level = "debug"

[crio.runtime.runtimes.runc]
runtime_path = %s
runtime_root = %s

[crio.image]
signature_policy = %s
%s
[crio.network]
network_dir = %s
plugin_dirs = [%s]

[crio.nri]
enable_nri = true
nri_listen = %s
nri_plugin_dir = %s
nri_plugin_config_dir = %s
nri_plugin_request_timeout = %s
`, q(filepath.Join(c.Dir, "root")), q(filepath.Join(c.Dir, "runroot")), q(filepath.Join(c.Dir, "logs")),
		q(filepath.Join(c.Dir, "run", "version")), q(filepath.Join(c.Dir, "run", "clean.shutdown")),
		q(c.Socket),
		q(c.bins["conmon"]), list(conmonEnv), q(filepath.Join(c.Dir, "exits")), q(filepath.Join(c.Dir, "attach")),
		q(filepath.Join(c.Dir, "ns")), q(c.bins["pinns"]), list(hooks),
		q(runtime), q(filepath.Join(c.Dir, "runc")),
		q(filepath.Join(c.Dir, "policy.json")), pause,
		q(filepath.Join(c.Dir, "cni")), q(filepath.Join(c.Dir, "cni")),
		q(c.NRISocket), q(filepath.Join(c.Dir, "nri", "plugins")), q(filepath.Join(c.Dir, "nri", "conf.d")),
		q(c.opts.RequestTimeout.String()))
}

// waitReady polls until the CRI answers and NRI listens.
func (c *CRIO) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("crio exited during start-up (%v); log tail:\n%s", c.cmd.ProcessState, c.LogTail(30))
		default:
		}
		if _, err := os.Stat(c.NRISocket); err != nil {
			last = "NRI socket not there yet"
		} else if out, err := c.crictlCtx(5*time.Second, "version"); err != nil {
			last = fmt.Sprintf("crictl version: %v: %s", err, strings.TrimSpace(out))
		} else {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CRI-O not ready after %v: %s; log tail:\n%s", timeout, last, c.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// LogTail returns the last n lines of CRI-O's log.
func (c *CRIO) LogTail(n int) string { return tailFile(c.logPath, n) }

// Log returns CRI-O's whole log.
func (c *CRIO) Log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// Stop removes every pod, stops CRI-O, unmounts what is left under the
// node's directory, removes the pods' cgroups and, for a directory of its
// own, the directory. It is safe to call more than once.
func (c *CRIO) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *CRIO) stop() error {
	var errs []error
	if c.cmd != nil {
		select {
		case <-c.exited:
		default:
			_, _ = c.crictlCtx(30*time.Second, "rmp", "-fa")
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.exited:
			case <-time.After(15 * time.Second):
				_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
				<-c.exited
			}
		}
	}
	// conmon processes outlive crio; runc's state says which containers
	// are left.
	if c.Dir != "" {
		root := filepath.Join(c.Dir, "runc")
		if out, err := exec.Command(c.bins["runc"], "--root", root, "list", "-q").Output(); err == nil {
			for _, id := range strings.Fields(string(out)) {
				_ = exec.Command(c.bins["runc"], "--root", root, "delete", "-f", id).Run()
			}
		}
		if err := unmountUnder(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	removeCgroups(c.cgroup)
	if c.ownDir {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
