package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/nodecheck"
	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/runtimegate"
	"github.com/sealgate/sealgate/tpm"
)

const doctorLong = `Checks, line by line, what decides whether an unverified container can run
on this node: the runtime and its NRI version, NRI's configuration, the
runtime gate, sealgate itself, the trust store and the TPM.

Exit status: 0 nothing lets an unverified container run, 1 something does
(each such line says the fix), 2 usage error.`

func doctorCmd(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	cfg := nodecheck.Config{GateBinary: "sealgate-runc", EscapeAnnotation: runtimegate.EscapeAnnotation}
	fs.StringVar(&cfg.Runtime, "runtime", "", "containerd or crio (default: the runtime sealgate is connected to, containerd when it does not answer)")
	fs.StringVar(&cfg.Containerd, "containerd-bin", "containerd", "containerd's binary (its NRI version is read from it)")
	fs.StringVar(&cfg.ContainerdConfig, "containerd-config", "", "containerd's config file (default: containerd's own default)")
	fs.StringVar(&cfg.CRIO, "crio-bin", "crio", "CRI-O's binary (crio config shows its configuration)")
	fs.StringVar(&cfg.CRIOConfig, "crio-config", "", "CRI-O's config file (default: CRI-O's own default)")
	fs.StringVar(&cfg.CRIOConfigDir, "crio-config-dir", "", "CRI-O's drop-in folder, with --crio-config")
	fs.StringVar(&cfg.PluginName, "plugin-name", plugin.DefaultName, "the name sealgate registers under")
	fs.StringVar(&cfg.GateSocket, "gate-socket", runtimegate.DefaultSocket, "the runtime gate's socket")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "bound on each check")
	trustDir := fs.String("trust-dir", "/etc/sealgate", "the trust store")
	tpmSpec := fs.String("tpm", "/dev/tpmrm0", "the TPM: a device, swtpm:HOST:PORT; none skips the trust store check")
	wait := fs.Duration("wait", 0, "first wait up to this long for sealgate to answer and be connected (after an install or a restart)")
	output := fs.String("output", "text", "output format: text or json")
	ready := fs.Bool("ready", false, "check only that sealgate is ready: it answers on --gate-socket, is connected to the runtime and decides with a sealed trust store (exit 0) or not (exit 1); for install scripts and readiness probes")
	return func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "sealgate doctor: unexpected argument %q\n", pos[0])
			return exitUsage
		}
		if *output != "text" && *output != "json" {
			fmt.Fprintf(stderr, "sealgate doctor: --output %q: want text or json\n", *output)
			return exitUsage
		}
		if r := cfg.Runtime; r != "" && r != "containerd" && r != "crio" {
			fmt.Fprintf(stderr, "sealgate doctor: --runtime %q: want containerd or crio\n", r)
			return exitUsage
		}
		if *ready {
			return readyCheck(ctx, cfg.GateSocket, *wait, stdout)
		}
		if *tpmSpec != "none" {
			cfg.Trust = func() nodecheck.Finding { return trustFinding(*trustDir, *tpmSpec) }
		}
		waitConnected(ctx, cfg.GateSocket, *wait)
		rep := nodecheck.Run(ctx, cfg)
		if *output == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			out := struct {
				OK bool `json:"ok"`
				*nodecheck.Report
			}{rep.OK(), rep}
			if err := enc.Encode(out); err != nil {
				fmt.Fprintf(stderr, "sealgate doctor: %v\n", err)
				return exitUsage
			}
		} else {
			for _, f := range rep.Findings {
				fmt.Fprintf(stdout, "%-4s %s: %s\n", f.Level, f.Check, strings.ReplaceAll(f.Detail, "\n", "\n     "))
				if f.Fix != "" {
					fmt.Fprintf(stdout, "     fix: %s\n", f.Fix)
				}
			}
			if rep.OK() {
				fmt.Fprintln(stdout, "no unverified container can run on this node")
			} else {
				fmt.Fprintln(stdout, "an unverified container can run on this node, or sealgate cannot protect it: see the FAIL lines")
			}
		}
		if !rep.OK() {
			return exitFailed
		}
		return exitOK
	}
}

// readyCheck is doctor --ready: sealgate answers, is connected to the
// runtime and decides with a sealed trust store, within wait.
func readyCheck(ctx context.Context, socket string, wait time.Duration, stdout io.Writer) int {
	deadline := time.Now().Add(wait)
	why := ""
	for {
		a, err := runtimegate.Ask(socket, runtimegate.Request{Op: runtimegate.OpStatus}, time.Second)
		switch {
		case err != nil:
			why = "sealgate does not answer on " + socket + ": " + err.Error()
		case a.Status == nil:
			why = "sealgate answered without a status"
		case !a.Status.Connected:
			why = "sealgate is not connected to the runtime"
		case a.Status.InsecureNoTPM:
			why = "sealgate runs without a TPM (--insecure-no-tpm): its trust store is not sealed"
		default:
			fmt.Fprintf(stdout, "ready: connected to %s, trust store %s at generation %d (%s)\n", a.Status.Runtime, a.Status.TrustDir, a.Status.TrustGeneration, a.Status.TrustDigest)
			return exitOK
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			fmt.Fprintf(stdout, "not ready: %s\n", why)
			return exitFailed
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitConnected waits up to d for the daemon to answer and be connected.
func waitConnected(ctx context.Context, socket string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		a, err := runtimegate.Ask(socket, runtimegate.Request{Op: runtimegate.OpStatus}, time.Second)
		if err == nil && a.Status != nil && a.Status.Connected {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// trustFinding checks the trust store on disk against the TPM.
func trustFinding(dir, spec string) nodecheck.Finding {
	const check = "trust store sealed"
	t, err := tpm.Open(spec)
	if err != nil {
		return nodecheck.Finding{Check: check, Level: nodecheck.Fail, Detail: fmt.Sprintf("TPM %s: %v", spec, err),
			Fix: "give sealgate a TPM (/dev/tpmrm0, or swtpm:HOST:PORT); --tpm none skips this check"}
	}
	defer t.Close()
	st, err := trust.Status(dir, t, "")
	if err != nil {
		return nodecheck.Finding{Check: check, Level: nodecheck.Fail, Detail: err.Error(), Fix: "sealgate trust status --trust-dir " + dir + " says more"}
	}
	if !st.OK() {
		return nodecheck.Finding{Check: check, Level: nodecheck.Fail, Detail: fmt.Sprintf("trust store %s would not open: %s", dir, strings.Join(st.Problems, "; ")),
			Fix: "sealgate trust status --trust-dir " + dir + "; after a deliberate change: sealgate trust seal"}
	}
	return nodecheck.Finding{Check: check, Level: nodecheck.OK, Detail: fmt.Sprintf("trust store %s matches its seal in TPM %s (generation %d, digest %s)", dir, spec, st.Generation, st.Digest)}
}
