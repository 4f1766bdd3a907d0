package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sealgate/sealgate/plugin"
)

func runCmd(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("sealgate run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ef engineFlags
	ef.register(fs)
	socket := fs.String("nri-socket", "/var/run/nri/nri.sock", "the runtime's NRI socket")
	name := fs.String("plugin-name", plugin.DefaultName, "name to register under (containerd's required_plugins names it)")
	idx := fs.String("plugin-idx", plugin.DefaultIndex, "plugin index, two digits (ignored when the runtime launched the plugin)")
	deadline := fs.Duration("deadline", plugin.DefaultDeadline, "time a decision may take before enforce mode denies; keep it under the runtime's NRI request timeout (containerd: 2s)")
	ctrdAddr := fs.String("containerd-address", "/run/containerd/containerd.sock", "containerd's socket, to find sandbox images and digests older runtimes do not send; empty disables")
	ctrdNS := fs.String("containerd-namespace", "k8s.io", "containerd namespace of the CRI")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
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

	engine, err := ef.build()
	if err != nil {
		log.Error("cannot start: " + err.Error())
		return exitUsage
	}
	pol := engine.Policy()
	log.Info("policy loaded", "file", pol.Path, "digest", pol.Digest, "mode", pol.Mode, "default", pol.Default, "rules", len(pol.Rules))

	opts := []plugin.Option{
		plugin.WithLogger(log), plugin.WithSocketPath(*socket), plugin.WithPluginName(*name),
		plugin.WithPluginIndex(*idx), plugin.WithDeadline(*deadline),
	}
	if *ctrdAddr != "" {
		r, err := plugin.NewContainerdResolver(*ctrdAddr, *ctrdNS)
		if err != nil {
			log.Error("cannot start: " + err.Error())
			return exitUsage
		}
		defer r.Close()
		opts = append(opts, plugin.WithResolver(r))
	}

	// The runtime closes the connection when it restarts; reconnect with
	// backoff, keeping the engine and its cached verdicts.
	backoff := 500 * time.Millisecond
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
		if time.Since(started) > time.Minute {
			backoff = 500 * time.Millisecond
		}
		log.Warn("disconnected from the runtime; reconnecting", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
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
