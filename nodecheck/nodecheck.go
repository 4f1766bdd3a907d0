// Package nodecheck says, line by line, what decides whether an unverified
// container can run on this node: the runtime and its NRI version, NRI's
// configuration, the runtime gate, the sealgate daemon, the trust store and
// the TPM. It reads the runtime's effective configuration (containerd
// config dump) and asks the daemon; it changes nothing.
package nodecheck

import (
	"context"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/runtimegate"
)

// Level is how a finding weighs.
type Level string

// Levels. Fail means an unverified container could run (or the node's
// protection is not what sealgate promises); Warn is worth knowing.
const (
	OK   Level = "ok"
	Warn Level = "warn"
	Fail Level = "FAIL"
)

// Finding is one line of the report.
type Finding struct {
	Check  string `json:"check"`
	Level  Level  `json:"level"`
	Detail string `json:"detail"`
	// Fix says what to do; empty when Level is OK.
	Fix string `json:"fix,omitempty"`
}

// Config says where things are on the node.
type Config struct {
	// Runtime is "containerd" or "crio"; empty: the one sealgate reports
	// being connected to, containerd when it does not answer.
	Runtime string
	// CRIO is CRI-O's binary; CRIOConfig and CRIOConfigDir its
	// configuration file and drop-in folder, empty for its defaults.
	CRIO          string
	CRIOConfig    string
	CRIOConfigDir string
	// Containerd is containerd's binary (its NRI version is read from it);
	// ContainerdConfig its config file, empty for its default.
	Containerd       string
	ContainerdConfig string
	// PluginName is what sealgate registers as (required_plugins names it).
	PluginName string
	// GateSocket is the runtime gate's socket; GateBinary the wrapper's
	// file name that runtimes' BinaryName must end with.
	GateSocket string
	GateBinary string
	// EscapeAnnotation is the static-pod escape.
	EscapeAnnotation string
	// Timeout bounds every external call.
	Timeout time.Duration
	// Trust checks the trust store against the TPM; nil skips the check
	// (it is then reported by what the daemon says).
	Trust func() Finding
}

// Report is every finding, in order.
type Report struct {
	Findings []Finding `json:"findings"`
	// Unverified are running containers the policy would deny, as the
	// daemon found them.
	Unverified []runtimegate.Running `json:"unverified,omitempty"`
}

// OK reports whether nothing failed.
func (r *Report) OK() bool {
	for _, f := range r.Findings {
		if f.Level == Fail {
			return false
		}
	}
	return true
}

func (r *Report) add(check string, level Level, detail, fix string) {
	r.Findings = append(r.Findings, Finding{Check: check, Level: level, Detail: detail, Fix: fix})
}

// Run checks the node.
func Run(ctx context.Context, cfg Config) *Report {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	r := &Report{}
	st := checkDaemon(cfg, r)
	runtime := cfg.Runtime
	if runtime == "" && st != nil && st.Runtime == "cri-o" {
		runtime = "crio"
	}
	if runtime == "crio" {
		checkCRIO(ctx, cfg, st, r)
	} else if rt := checkRuntime(ctx, cfg, r); rt != nil {
		checkNRIConfig(cfg, rt, st, r)
		checkRuntimeGateConfig(cfg, rt, r)
	}
	if st != nil {
		checkUnverified(st, r)
		if st.InsecureNoTPM {
			r.add("trust store in use", Fail, "sealgate runs with --insecure-no-tpm: anyone who can write its trust store can change what it allows, and no verdict survives a restart offline",
				"seal the trust store (sealgate trust seal) and run sealgate with its TPM (drop --insecure-no-tpm)")
		} else {
			r.add("trust store in use", OK, fmt.Sprintf("sealgate decides with the sealed trust store %s, generation %d, digest %s", st.TrustDir, st.TrustGeneration, st.TrustDigest), "")
		}
	}
	if cfg.Trust != nil {
		f := cfg.Trust()
		r.Findings = append(r.Findings, f)
	}
	return r
}

// checkDaemon asks sealgate how it is.
func checkDaemon(cfg Config, r *Report) *runtimegate.Status {
	a, err := runtimegate.Ask(cfg.GateSocket, runtimegate.Request{Op: runtimegate.OpStatus}, cfg.Timeout)
	if err != nil || a.Status == nil {
		if err == nil {
			err = fmt.Errorf("no status in the answer")
		}
		r.add("runtime gate answering", Fail, fmt.Sprintf("sealgate does not answer on %s: %v; the runtime gate refuses every new container meanwhile", cfg.GateSocket, err),
			"start sealgate: systemctl start sealgate (journalctl -u sealgate says why it stopped)")
		return nil
	}
	r.add("runtime gate answering", OK, fmt.Sprintf("sealgate answers on %s (%d checks, %d refused)", cfg.GateSocket, a.Status.Checks, a.Status.Refusals), "")
	if a.Status.Connected {
		r.add("sealgate connected", OK, fmt.Sprintf("registered with %s %s over NRI, deadline %s", a.Status.Runtime, a.Status.RuntimeVersion, a.Status.Deadline), "")
	} else {
		r.add("sealgate connected", Fail, "sealgate runs but is not registered with the runtime over NRI: containers are refused by the runtime gate without a reason",
			"check that NRI is enabled and its socket is where sealgate dials (--nri-socket); journalctl -u sealgate")
	}
	return a.Status
}

func checkUnverified(st *runtimegate.Status, r *Report) {
	r.Unverified = st.Unverified
	if len(st.Unverified) == 0 {
		r.add("running containers", OK, "every running container's image is allowed by the policy (as of sealgate's last connection or trust change)", "")
		return
	}
	detail := fmt.Sprintf("%d running container(s) whose images the policy denies:", len(st.Unverified))
	for _, u := range st.Unverified {
		detail += fmt.Sprintf("\n  pod %s/%s container %s image %s", u.Namespace, u.Pod, u.Container, u.Image)
		if u.Digest != "" {
			detail += "@" + u.Digest
		}
	}
	r.add("running containers", Fail, detail, "stop them (crictl stop/rm, or delete their pods) and run signed images; they started while sealgate was not deciding, or before the policy changed (a key revoked)")
}
