package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/cmd/internal/daemon"
	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/runtimegate"
)

const runLong = `Runs the NRI plugin: every container the runtime creates is decided by the
policy of the sealed trust store.

With sealgate-daemon installed beside this binary, the process becomes that
smaller binary (same PID, same flags), and images no verdict decides are
checked in a verifier process (this binary's hidden verifier command), started
when needed and stopped when idle. Without it, everything runs in this process.`

func runCmd(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	var nf nodeFlags
	nf.registerAnchor(fs, "where verified verdicts are persisted, authenticated with a key sealed in the TPM")
	nf.registerEngine(fs, "run without a TPM: the trust store is not checked and verdicts are not persisted (says so at every start)")
	c := &nf.cfg
	fs.StringVar(&c.NRISocket, "nri-socket", node.DefaultNRISocket, "the runtime's NRI socket")
	fs.StringVar(&c.PluginName, "plugin-name", plugin.DefaultName, "name to register under (containerd's required_plugins names it)")
	fs.StringVar(&c.PluginIndex, "plugin-idx", plugin.DefaultIndex, "plugin index, two digits (ignored when the runtime launched the plugin)")
	fs.DurationVar(&c.Deadline, "deadline", plugin.DefaultDeadline, "time a decision may take before enforce mode denies; keep it under the runtime's NRI request timeout (containerd: 2s)")
	fs.StringVar(&c.ContainerdAddress, "containerd-address", node.DefaultContainerdAddress, "containerd's socket, to find sandbox images and digests older runtimes do not send; empty disables")
	fs.StringVar(&c.ContainerdNamespace, "containerd-namespace", node.DefaultContainerdNamespace, "containerd namespace of the CRI")
	fs.DurationVar(&c.ImagePoll, "crio-image-poll", node.DefaultImagePoll, "on CRI-O, how often its image list is read to verify new images before their first container")
	fs.StringVar(&c.CRIOAddress, "crio-address", plugin.DefaultCRIOAddress, "CRI-O's CRI socket, asked for the image of each container (CRI-O's NRI sends none) and the sandbox image; used when the runtime is CRI-O; empty disables")
	fs.StringVar(&c.MetricsAddress, "metrics-address", "", "where /metrics, /healthz, /readyz and /status are served: a unix socket path or tcp:HOST:PORT; default metrics.sock beside --gate-socket, none for none")
	fs.StringVar(&c.DecisionLog, "decision-log", "", "where every decision is written as a hash-chained JSON line (sealgate log verify checks it); default <state-dir>/decisions.log, none for no log")
	fs.StringVar(&c.GateSocket, "gate-socket", runtimegate.DefaultSocket, "where the runtime gate (sealgate-runc) asks about each container; its folder is made root-only")
	verifierProcess := fs.Bool("verifier-process", false, "without sealgate-daemon beside this binary, still check what no verdict decides in a verifier process")
	fs.DurationVar(&c.VerifierIdle, "verifier-idle", 0, "how long the verifier process stays up with nothing to check (default 30s)")
	_ = fs.MarkHidden("verifier-process")
	_ = fs.MarkHidden("verifier-idle")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	return func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "sealgate run: unexpected argument %q\n", pos[0])
			return exitUsage
		}
		if _, err := daemon.NewLogger(stderr, *logLevel, *logFormat); err != nil {
			fmt.Fprintf(stderr, "sealgate run: %v\n", err)
			return exitUsage
		}
		c.Version = version
		if !c.InsecureNoTPM && c.PolicyFile != "" && sameFile(c.PolicyFile, filepath.Join(c.TrustDir, trust.PolicyName)) {
			// Units written for earlier releases name the sealed policy
			// explicitly; it is the trust store's, read from the sealed bytes.
			c.PolicyFile = ""
		}
		c.LaunchedByRuntime = launchedByRuntime()
		dc := daemon.Config{Node: *c, LogLevel: *logLevel, LogFormat: *logFormat}
		bin, err := daemon.Find()
		if err != nil {
			fmt.Fprintf(stderr, "sealgate run: %v\n", err)
			return exitFailed
		}
		if bin != "" || *verifierProcess {
			exe, err := os.Executable()
			if err == nil {
				exe, err = filepath.EvalSymlinks(exe)
			}
			if err != nil {
				fmt.Fprintf(stderr, "sealgate run: where this binary is: %v\n", err)
				return exitFailed
			}
			// This binary's `verifier` command checks what no verdict
			// decides, in a process started when needed.
			dc.Node.Verifier, dc.Node.Local = exe, nil
		}
		if bin != "" {
			// The daemon binary takes this process over: same PID, the
			// runtime's connection and the environment kept, without the
			// verifier's code and memory.
			err := daemon.Exec(bin, dc)
			fmt.Fprintf(stderr, "sealgate run: %v\n", err)
			return exitFailed
		}
		return daemon.Run(ctx, dc, stderr)
	}
}

// sameFile reports whether a and b name the same file.
func sameFile(a, b string) bool {
	ai, errA := os.Stat(a)
	bi, errB := os.Stat(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return os.SameFile(ai, bi)
}
