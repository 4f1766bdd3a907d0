package nodecheck

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"golang.org/x/mod/semver"

	"github.com/sealgate/sealgate/runtimegate"
)

// nriFailClosed is the first NRI release that honours a plugin's failure
// policy: before it, a killed, restarted or slow plugin lets the container
// through.
const nriFailClosed = "v0.12.5"

// runtimeInfo is what the runtime's binary and effective config say.
type runtimeInfo struct {
	version string
	nri     string
	config  map[string]any
}

// checkRuntime reads containerd's version, its NRI version and its
// effective configuration.
func checkRuntime(ctx context.Context, cfg Config, r *Report) *runtimeInfo {
	bin := cfg.Containerd
	if bin == "" {
		bin = "containerd"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		r.add("runtime", Fail, fmt.Sprintf("no containerd binary (%v)", err), "pass --containerd-bin, or install containerd >= 2.2")
		return nil
	}
	info := &runtimeInfo{}
	if bi, err := buildinfo.ReadFile(path); err == nil {
		info.version = bi.Main.Version
		for _, d := range bi.Deps {
			if d.Path == "github.com/containerd/nri" {
				info.nri = d.Version
				if d.Replace != nil {
					info.nri = d.Replace.Version
				}
			}
		}
	}
	switch {
	case info.nri == "":
		r.add("runtime", Warn, fmt.Sprintf("containerd %s at %s: its NRI version cannot be read", info.version, path),
			"assume NRI alone does not fail closed: keep the runtime gate installed")
	case semver.Compare(info.nri, nriFailClosed) < 0:
		r.add("runtime", OK, fmt.Sprintf("containerd %s at %s links NRI %s: NRI alone lets a container through when sealgate is killed, restarted or slower than the request timeout; the runtime gate is what fails closed", info.version, path, info.nri), "")
	default:
		r.add("runtime", OK, fmt.Sprintf("containerd %s at %s links NRI %s, which honours sealgate's failure policy", info.version, path, info.nri), "")
	}

	args := []string{}
	if cfg.ContainerdConfig != "" {
		args = append(args, "--config", cfg.ContainerdConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, append(args, "config", "dump")...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		r.add("runtime config", Fail, fmt.Sprintf("containerd config dump: %v: %s", err, lastLine(stderr.String())),
			"fix containerd's configuration (containerd config dump shows the error)")
		return nil
	}
	if err := toml.Unmarshal(stdout.Bytes(), &info.config); err != nil {
		r.add("runtime config", Fail, fmt.Sprintf("containerd config dump: %v", err), "report this: sealgate cannot read containerd's configuration")
		return nil
	}
	return info
}

// checkNRIConfig checks NRI is on, requires sealgate, and times out later
// than sealgate decides.
func checkNRIConfig(cfg Config, rt *runtimeInfo, st *runtimegate.Status, r *Report) {
	nri := table(rt.config, "plugins", "io.containerd.nri.v1.nri")
	if nri == nil || nri["disable"] == true {
		r.add("NRI enabled", Fail, "NRI is disabled in containerd's configuration: sealgate is never asked",
			"install sealgate's drop-in (/etc/containerd/conf.d/sealgate.toml, imported by config.toml) and restart containerd")
		return
	}
	if nri["disable_connections"] == true {
		r.add("NRI enabled", Fail, "NRI is on but refuses external plugins (disable_connections = true): sealgate cannot connect",
			"set disable_connections = false (sealgate's drop-in does) and restart containerd")
	} else {
		r.add("NRI enabled", OK, fmt.Sprintf("NRI is on; plugins connect at %v", nri["socket_path"]), "")
	}

	v := table(nri, "default_validator")
	required, _ := v["required_plugins"].([]any)
	has := false
	for _, p := range required {
		if p == cfg.PluginName {
			has = true
		}
	}
	switch {
	case v == nil || v["enable"] != true:
		r.add("required_plugins", Fail, "NRI's default validator is off: while sealgate is not connected, NRI creates containers without asking it",
			"install sealgate's drop-in (default_validator enable = true, required_plugins = ['"+cfg.PluginName+"']) and restart containerd")
	case !has:
		r.add("required_plugins", Fail, fmt.Sprintf("NRI's required_plugins %v does not name %q: while sealgate is not connected, NRI creates containers without asking it", required, cfg.PluginName),
			"add '"+cfg.PluginName+"' to required_plugins (sealgate's drop-in does) and restart containerd")
	default:
		r.add("required_plugins", OK, fmt.Sprintf("NRI requires %q: no container is created while it is not connected (escape annotation %v)", cfg.PluginName, v["tolerate_missing_plugins_annotation"]), "")
	}

	timeout, _ := nri["plugin_request_timeout"].(string)
	rt2, err := time.ParseDuration(timeout)
	deadline := daemonDeadline(st)
	switch {
	case err != nil:
		r.add("request timeout", Warn, fmt.Sprintf("NRI's plugin_request_timeout %q does not parse", timeout), "set plugin_request_timeout = '2s'")
	case deadline > 0 && deadline >= rt2:
		r.add("request timeout", Fail, fmt.Sprintf("sealgate's deadline %s is not under NRI's request timeout %s: a slow decision makes NRI drop sealgate", deadline, rt2),
			"lower sealgate's --deadline under the request timeout, or raise plugin_request_timeout")
	case deadline > 0:
		r.add("request timeout", OK, fmt.Sprintf("sealgate decides within %s, under NRI's request timeout %s", deadline, rt2), "")
	default:
		r.add("request timeout", OK, fmt.Sprintf("NRI's request timeout is %s (sealgate's deadline unknown: it does not answer)", rt2), "")
	}
}

// checkRuntimeGateConfig checks every runc runtime runs through the
// wrapper, and that the escape annotation reaches it.
func checkRuntimeGateConfig(cfg Config, rt *runtimeInfo, r *Report) {
	runtimes := table(rt.config, "plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes")
	if len(runtimes) == 0 {
		r.add("runtime gate installed", Fail, "containerd's CRI has no runtimes configured", "install sealgate's drop-in and restart containerd")
		return
	}
	names := make([]string, 0, len(runtimes))
	for n := range runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rtc, _ := runtimes[n].(map[string]any)
		typ, _ := rtc["runtime_type"].(string)
		check := "runtime gate on runtime " + n
		if typ != "io.containerd.runc.v2" {
			r.add(check, Fail, fmt.Sprintf("runtime %q (%s) does not run through sealgate-runc: pods with runtimeClassName %s are not checked by the runtime gate", n, typ, n),
				"remove the runtime handler, or make it a runc runtime with BinaryName = the sealgate-runc path")
			continue
		}
		bin, _ := table(rtc, "options")["BinaryName"].(string)
		if filepath.Base(bin) != cfg.GateBinary {
			shown := bin
			if shown == "" {
				shown = "runc from PATH"
			}
			r.add(check, Fail, fmt.Sprintf("runtime %q runs %s directly: a container NRI lets through unchecked (sealgate killed, restarted, stalled) is created", n, shown),
				fmt.Sprintf("set [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.%s.options] BinaryName = '/usr/local/bin/%s' (sealgate's drop-in does for runc) and restart containerd", n, cfg.GateBinary))
			continue
		}
		r.add(check, OK, fmt.Sprintf("runtime %q runs runc through %s", n, bin), "")
		pods, _ := rtc["pod_annotations"].([]any)
		escape := false
		for _, p := range pods {
			if s, _ := p.(string); s == cfg.EscapeAnnotation {
				escape = true
			}
		}
		if !escape && cfg.EscapeAnnotation != "" {
			r.add("escape annotation on runtime "+n, Warn, fmt.Sprintf("pod_annotations of runtime %q do not pass %s to the runtime gate: static pods cannot start while sealgate is down", n, cfg.EscapeAnnotation),
				fmt.Sprintf("add pod_annotations = ['%s', '%s/*'] to the runtime (sealgate's drop-in does)", cfg.EscapeAnnotation, cfg.EscapeAnnotation))
		}
	}
}

// table walks nested TOML tables.
func table(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		if m == nil {
			return nil
		}
		m, _ = m[k].(map[string]any)
	}
	return m
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// daemonDeadline is the deadline the daemon reports, 0 when unknown.
func daemonDeadline(st *runtimegate.Status) time.Duration {
	if st == nil {
		return 0
	}
	d, err := time.ParseDuration(st.Deadline)
	if err != nil {
		return 0
	}
	return d
}
