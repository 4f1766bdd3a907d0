package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/runtimegate"
)

func runCmd(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("sealgate run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ef engineFlags
	ef.register(fs)
	var tf anchorFlags
	fs.StringVar(&tf.dir, "trust-dir", "/etc/sealgate", "the trust store: policy.yaml, keys/, roots/ and the seal record (sealgate trust seal)")
	fs.StringVar(&tf.tpm, "tpm", "/dev/tpmrm0", "the TPM: a device (/dev/tpmrm0) or swtpm:HOST:PORT")
	fs.StringVar(&tf.stateDir, "state-dir", "/var/lib/sealgate", "where verified verdicts are persisted, authenticated with a key sealed in the TPM")
	fs.BoolVar(&tf.noTPM, "insecure-no-tpm", false, "run without a TPM: the trust store is not checked and verdicts are not persisted (says so at every start)")
	revalidate := fs.Duration("revalidate-after", decision.DefaultRevalidateAfter, "how long a verified verdict decides before the sources are asked again")
	socket := fs.String("nri-socket", "/var/run/nri/nri.sock", "the runtime's NRI socket")
	name := fs.String("plugin-name", plugin.DefaultName, "name to register under (containerd's required_plugins names it)")
	idx := fs.String("plugin-idx", plugin.DefaultIndex, "plugin index, two digits (ignored when the runtime launched the plugin)")
	deadline := fs.Duration("deadline", plugin.DefaultDeadline, "time a decision may take before enforce mode denies; keep it under the runtime's NRI request timeout (containerd: 2s)")
	ctrdAddr := fs.String("containerd-address", "/run/containerd/containerd.sock", "containerd's socket, to find sandbox images and digests older runtimes do not send; empty disables")
	ctrdNS := fs.String("containerd-namespace", "k8s.io", "containerd namespace of the CRI")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	gateSocket := fs.String("gate-socket", runtimegate.DefaultSocket, "where the runtime gate (sealgate-runc) asks about each container; its folder is made root-only")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sealgate run [flags]\n\nRuns the NRI plugin: every container the runtime creates is decided by the policy.")
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "sealgate run: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "sealgate run: %v\n", err)
		return exitUsage
	}

	policyFlag := ef.policy
	ef.policy = tf.policyPath(ef.policy)
	if !tf.noTPM && policyFlag != "" && !sameFile(ef.policy, filepath.Join(tf.dir, "policy.yaml")) {
		log.Error("cannot start: with a TPM the policy is the sealed trust store's (" + filepath.Join(tf.dir, "policy.yaml") + "); --policy is only for --insecure-no-tpm")
		return exitUsage
	}
	anch, err := tf.anchor(log)
	if err != nil {
		log.Error("cannot start: " + err.Error())
		return exitFailed
	}
	defer anch.closeFn()
	engineOpts := append(anch.opts, decision.WithRevalidateAfter(*revalidate))
	var engine *decision.Engine
	if anch.opened != nil {
		// The policy and what it names, from the bytes the TPM check
		// covered.
		pol, perr := sealedPolicy(anch.opened)
		if perr != nil {
			log.Error("cannot start: " + perr.Error())
			return exitUsage
		}
		engine, err = ef.buildWith(pol, engineOpts...)
	} else {
		engine, err = ef.build(engineOpts...)
	}
	if err != nil {
		log.Error("cannot start: " + err.Error())
		return exitUsage
	}
	pol := engine.Policy()
	if !tf.noTPM {
		// Everything that decides must be sealed: a key or root the policy
		// names outside the trust store would escape the TPM's check.
		for _, f := range pol.Files() {
			if !within(tf.dir, f) {
				log.Error("cannot start: the policy names " + f + ", which is outside the sealed trust store " + tf.dir + "; move it into the trust store and re-seal")
				return exitUsage
			}
		}
	}
	log.Info("policy loaded", "file", pol.Path, "digest", pol.Digest, "mode", pol.Mode, "default", pol.Default, "rules", len(pol.Rules))

	warmer := plugin.NewWarmer(engine, log)
	opts := []plugin.Option{
		plugin.WithLogger(log), plugin.WithSocketPath(*socket), plugin.WithPluginName(*name),
		plugin.WithPluginIndex(*idx), plugin.WithDeadline(*deadline), plugin.WithWarmer(warmer),
	}
	var resolver plugin.Resolver
	if *ctrdAddr != "" {
		r, err := plugin.NewContainerdResolver(*ctrdAddr, *ctrdNS)
		if err != nil {
			log.Error("cannot start: " + err.Error())
			return exitUsage
		}
		defer r.Close()
		resolver = r
		opts = append(opts, plugin.WithResolver(r))
		// Verify pulled images before any container of them is created.
		go func() {
			for ctx.Err() == nil {
				err := r.WatchPulls(ctx, func(name, digest string) {
					warmer.Warm(decision.Request{Image: name, Digest: digest}, "image pulled")
				})
				if ctx.Err() == nil {
					log.Warn("watching containerd's image events stopped; retrying", "error", err)
					select {
					case <-ctx.Done():
					case <-time.After(2 * time.Second):
					}
				}
			}
		}()
	}

	// The runtime gate answers before the plugin connects: containers the
	// runtime creates meanwhile are refused with a reason, not left to a
	// timeout.
	if *gateSocket != "" {
		gate := plugin.NewGate(engine, resolver, *deadline, log)
		if anch.opened != nil {
			gate.SetTrust(false, anch.opened.Dir, anch.opened.Generation, anch.opened.Record.Digest)
		} else {
			gate.SetTrust(true, "", 0, "")
		}
		srv, err := runtimegate.Listen(*gateSocket, gate, func(err error) { log.Warn(err.Error()) })
		if err != nil {
			log.Error("cannot start: " + err.Error())
			return exitFailed
		}
		gate.LogEscapes(*gateSocket)
		go func() {
			if err := srv.Serve(ctx); err != nil {
				log.Error("runtime gate stopped", "error", err)
			}
		}()
		log.Info("runtime gate listening", "socket", *gateSocket)
		opts = append(opts, plugin.WithGate(gate), plugin.WithOnClose(func() { gate.LogEscapes(*gateSocket) }))
	}
	return connectLoop(ctx, log, engine, opts)
}

// reconnectEvery is how often a disconnected plugin dials the runtime
// again. Dialling a unix socket that is not there costs nothing, and every
// moment without the plugin is a moment the node refuses containers.
const reconnectEvery = 200 * time.Millisecond

// connectLoop keeps the plugin connected: the runtime closes the connection
// when it restarts, and the plugin dials again until it is back, keeping the
// engine and its cached verdicts.
func connectLoop(ctx context.Context, log *slog.Logger, engine *decision.Engine, opts []plugin.Option) int {
	warned := false
	for {
		p, err := plugin.New(engine, opts...)
		if err != nil {
			log.Error("cannot start: " + err.Error())
			return exitUsage
		}
		started := time.Now()
		err = p.Run(ctx)
		if ctx.Err() != nil {
			log.Info("stopping", "allowed", p.Stats().Allowed.Load(), "denied", p.Stats().Denied.Load())
			return exitOK
		}
		if launchedByRuntime() {
			// The runtime handed over one connection; it cannot be
			// redialled. The runtime starts its plugins again when it
			// restarts.
			log.Error("the runtime closed the connection it launched the plugin with; exiting", "error", err)
			return exitFailed
		}
		// One warning per lost connection, not one per attempt.
		if time.Since(started) > 2*reconnectEvery || !warned {
			log.Warn("disconnected from the runtime; reconnecting", "error", err, "every", reconnectEvery.String())
			warned = true
		} else {
			log.Debug("runtime not back yet", "error", err)
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(reconnectEvery):
		}
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
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

// within reports whether file lies inside dir.
func within(dir, file string) bool {
	d, err1 := filepath.Abs(dir)
	f, err2 := filepath.Abs(file)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, f)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
