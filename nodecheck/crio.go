package nodecheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/sealgate/sealgate/plugin/credentials"
	"github.com/sealgate/sealgate/runtimegate"
)

// CRI-O's defaults (1.34) for what `crio config` leaves commented out.
var (
	crioDefaultHooksDirs      = []string{"/usr/share/containers/oci/hooks.d"}
	crioDefaultRequestTimeout = 2 * time.Second
	crioDefaultConfig         = "/etc/crio/crio.conf"
	crioDefaultConfigDir      = "/etc/crio/crio.conf.d"
)

// checkCRIO checks a CRI-O node: NRI on, sealgate's runtime gate in front
// of every container (an OCI createRuntime hook in one of CRI-O's hooks
// folders, or the gate as each runtime's runtime_path), and the request
// timeout. CRI-O has no required plugins: the gate is what fails closed.
func checkCRIO(ctx context.Context, cfg Config, st *runtimegate.Status, r *Report) {
	bin := cfg.CRIO
	if bin == "" {
		bin = "crio"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		r.add("runtime", Fail, fmt.Sprintf("no crio binary (%v)", err), "pass --crio-bin")
		return
	}
	args := []string{}
	if cfg.CRIOConfig != "" {
		args = append(args, "--config", cfg.CRIOConfig, "--config-dir", cfg.CRIOConfigDir)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, append(args, "config")...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		r.add("runtime config", Fail, fmt.Sprintf("crio config: %v: %s", err, lastLine(stderr.String())), "fix CRI-O's configuration (crio config shows the error)")
		return
	}
	var conf map[string]any
	if err := toml.Unmarshal(stdout.Bytes(), &conf); err != nil {
		r.add("runtime config", Fail, fmt.Sprintf("crio config: %v", err), "report this: sealgate cannot read CRI-O's configuration")
		return
	}
	r.add("runtime", OK, fmt.Sprintf("CRI-O at %s: no required NRI plugins, so the runtime gate is what fails closed", path), "")

	nri := table(conf, "crio", "nri")
	if v, ok := nri["enable_nri"].(bool); ok && !v {
		r.add("NRI enabled", Fail, "NRI is disabled in CRI-O's configuration: sealgate is never asked", "install sealgate's drop-in (/etc/crio/crio.conf.d/10-sealgate.conf) and restart CRI-O")
	} else {
		r.add("NRI enabled", OK, "NRI is on in CRI-O", "")
	}

	rt := crioDefaultRequestTimeout
	if s, ok := nri["nri_plugin_request_timeout"].(string); ok {
		if d, err := time.ParseDuration(s); err == nil {
			rt = d
		}
	}
	switch deadline := daemonDeadline(st); {
	case deadline > 0 && deadline >= rt:
		r.add("request timeout", Fail, fmt.Sprintf("sealgate's deadline %s is not under CRI-O's NRI request timeout %s", deadline, rt),
			"lower sealgate's --deadline under the request timeout, or raise nri_plugin_request_timeout")
	case deadline > 0:
		r.add("request timeout", OK, fmt.Sprintf("sealgate decides within %s, under CRI-O's NRI request timeout %s", deadline, rt), "")
	default:
		r.add("request timeout", OK, fmt.Sprintf("CRI-O's NRI request timeout is %s (sealgate's deadline unknown: it does not answer)", rt), "")
	}

	checkCRIOAuth(cfg, conf, r)

	runtime := table(conf, "crio", "runtime")
	dirs := crioDefaultHooksDirs
	if l, ok := runtime["hooks_dir"].([]any); ok {
		dirs = nil
		for _, d := range l {
			if s, ok := d.(string); ok {
				dirs = append(dirs, s)
			}
		}
	}
	if hook := findGateHook(dirs, cfg.GateBinary); hook != "" {
		r.add("runtime gate as an OCI hook", OK, fmt.Sprintf("%s runs %s before every container CRI-O creates, with any OCI runtime", hook, cfg.GateBinary), "")
		return
	}
	// No hook: every runtime must run the gate as its runtime_path.
	runtimes := table(runtime, "runtimes")
	names := make([]string, 0, len(runtimes))
	for n := range runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	wrapped := len(names) > 0
	for _, n := range names {
		p, _ := table(runtimes, n)["runtime_path"].(string)
		if filepath.Base(p) != cfg.GateBinary {
			wrapped = false
			r.add("runtime gate on runtime "+n, Fail, fmt.Sprintf("CRI-O's runtime %q runs %q directly", n, p), "")
		}
	}
	if wrapped {
		r.add("runtime gate installed", OK, fmt.Sprintf("every CRI-O runtime (%s) runs through %s", strings.Join(names, ", "), cfg.GateBinary), "")
		return
	}
	r.add("runtime gate installed", Fail, fmt.Sprintf("no OCI hook in %v runs %s, and not every runtime does: CRI-O creates containers unchecked while sealgate is killed, restarted or stalled", dirs, cfg.GateBinary),
		"install the hook: install.sh --runtime crio (/etc/containers/oci/hooks.d/sealgate.json, a createRuntime hook running '"+cfg.GateBinary+" hook', when always)")
}

// checkCRIOAuth compares the auth file CRI-O pulls with (its effective
// configuration, flags and environment included) with the one sealgate
// finds in CRI-O's configuration files, which it reads signatures with.
func checkCRIOAuth(cfg Config, conf map[string]any, r *Report) {
	effective, _ := table(conf, "crio", "image")["global_auth_file"].(string)
	file, dir := cfg.CRIOConfig, cfg.CRIOConfigDir
	if file == "" {
		file, dir = crioDefaultConfig, crioDefaultConfigDir
	}
	fromFiles, _, err := credentials.CRIOAuthFile(file, dir)
	switch {
	case err != nil:
		r.add("registry credentials", Warn, fmt.Sprintf("sealgate cannot read CRI-O's configuration: %v", err), "fix the file named")
	case fromFiles != effective:
		r.add("registry credentials", Warn, fmt.Sprintf("CRI-O pulls with the auth file %q (global_auth_file, set by a flag or the environment) but its configuration files, which sealgate reads, say %q: sealgate cannot read signatures in private registries with CRI-O's credentials", effective, fromFiles),
			fmt.Sprintf("set global_auth_file in a CRI-O drop-in, or run sealgate with --registry-auth-file %s", effective))
	case effective == "":
		r.add("registry credentials", OK, "CRI-O and sealgate read the same auth file: containers' default (for root /run/containers/0/auth.json)", "")
	default:
		r.add("registry credentials", OK, fmt.Sprintf("CRI-O and sealgate read the same auth file: %s (global_auth_file)", effective), "")
	}
}

// findGateHook returns the hooks.d file that runs the gate as a
// createRuntime hook for every container, or "".
func findGateHook(dirs []string, gate string) string {
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			b, err := io.ReadAll(io.LimitReader(f, 1<<20))
			f.Close()
			if err != nil {
				continue
			}
			var h struct {
				Hook struct {
					Path string   `json:"path"`
					Args []string `json:"args"`
				} `json:"hook"`
				When struct {
					Always bool `json:"always"`
				} `json:"when"`
				Stages []string `json:"stages"`
			}
			if json.Unmarshal(b, &h) != nil {
				continue
			}
			if filepath.Base(h.Hook.Path) == gate && len(h.Hook.Args) >= 2 && h.Hook.Args[1] == "hook" &&
				h.When.Always && slices.Contains(h.Stages, "createRuntime") {
				return p
			}
		}
	}
	return ""
}
