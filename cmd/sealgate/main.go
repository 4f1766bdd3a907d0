// Command sealgate is the node-level image-signature gate: an NRI plugin
// (`sealgate run`) and the tools around it. This file holds flags and wiring
// only; the logic lives in plugin/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/containerd/nri/pkg/api"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes shared by every subcommand; `verify` documents 0/1/2.
const (
	exitOK     = 0
	exitDenied = 1 // verify: the image is denied
	exitFailed = 1 // run: the daemon stopped on an error
	exitUsage  = 2
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run the NRI plugin daemon beside containerd", runCmd},
		{"verify", "decide on one image, exactly as the daemon would", verifyCmd},
		{"verify-bundle", "verify a Sigstore bundle over a file or digest (conformance client protocol)", verifyBundleCmd},
		{"policy", "check a policy file, or import one from another tool (check | import)", policyCmd},
		{"trust", "init, seal and check the trust store against the TPM (init | seal | status)", trustCmd},
		{"bundle", "carry signatures to air-gapped nodes (export | import)", bundleCmd},
		{"cache", "list or purge the persisted verdicts (list | purge)", cacheCmd},
		{"verify-pull", "containerd's image verifier: decide on an image before it is pulled", verifyPullCmd},
		{"doctor", "check what decides whether an unverified container can run on this node", doctorCmd},
		{"version", "print the version, the commit and the Go version it was built with", versionCmd},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 && launchedByRuntime() {
		// Installed as a pre-started plugin (/opt/nri/plugins/10-sealgate),
		// the runtime starts the binary without arguments.
		return runCmd(ctx, nil, stdout, stderr)
	}
	if len(args) > 0 && isImageVerifierCall(args) {
		// Run by containerd's bindir image verifier, which passes only
		// its own flags (-name, -digest, -stdin-media-type).
		return verifyPullCmd(ctx, args, stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		return versionCmd(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 1 && wantsHelp(args[1:]) {
		// Help asked for is output, not an error: it goes to stdout.
		stderr = stdout
	}
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "sealgate: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: sealgate COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'sealgate COMMAND -h' for a command's flags.")
}

// wantsHelp reports whether args ask for a command's help.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// versionCmd prints the version, the commit and the Go version, from the
// build information the Go toolchain records.
func versionCmd(_ context.Context, _ []string, stdout, _ io.Writer) int {
	v, commit, dirty, goVersion := version, "unknown", "", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
	}
	fmt.Fprintf(stdout, "sealgate %s\ncommit %s%s\n%s\n", v, commit, dirty, goVersion)
	return exitOK
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// flagErr maps a flag parsing error to an exit code (help is not an error).
func flagErr(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// launchedByRuntime reports whether the container runtime started this
// process from its plugin folder: it then passes the connection and the
// plugin's name and index in the environment.
func launchedByRuntime() bool {
	return os.Getenv(api.PluginSocketEnvVar) != ""
}
