// Command sealgate is the node-level image-signature gate: an NRI plugin
// (`sealgate run`) and the tools around it. This file holds flags and wiring
// only; the logic lives in plugin/.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/containerd/nri/pkg/api"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/node/verifier"
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

// runFunc runs a command on its positional arguments, with its flags
// already parsed, and returns the exit status.
type runFunc func(ctx context.Context, pos []string, stdout, stderr io.Writer) int

// leaf is a command that runs: its usage line, summary and help, and a
// setup that registers its flags (on the cobra command, so that help,
// completion and man pages come from the same definitions) and returns
// what runs.
type leaf struct {
	use, short, long string
	setup            func(fs *pflag.FlagSet, stderr io.Writer) runFunc
}

// group is a command made of subcommands; with setup, the group itself
// also runs (sealgate attest quotes, sealgate attest verify checks).
type group struct {
	use, short, long string
	subs             []leaf
	setup            func(fs *pflag.FlagSet, stderr io.Writer) runFunc
}

func commands() []any {
	return []any{
		leaf{"run", "Run the NRI plugin daemon beside containerd", runLong, runCmd},
		leaf{"verify IMAGE[:TAG|@DIGEST]...", "Decide on images exactly as the daemon would", verifyLong, verifyCmd},
		leaf{"verify-bundle --bundle FILE FILE_OR_sha256:DIGEST", "Verify a Sigstore bundle over a file or digest (conformance client protocol)", verifyBundleLong, verifyBundleCmd},
		group{"policy", "Check a policy file, or import one from another tool", policyLong, []leaf{
			{"check FILE...", "Check policy files as the daemon parses them, without a TPM or an image", policyCheckLong, policyCheck},
			{"import --from FORMAT FILE", "Write a sealgate policy from containers-policy.json or ClusterImagePolicy", policyImportLong, policyImport},
		}, nil},
		group{"trust", "Init, seal and check the trust store against the TPM", trustLong, []leaf{
			{"init DIR", "Write a starter trust store into a new or empty DIR", trustInitLong, trustInitCmd},
			{"seal", "Check the policy, then seal the trust store to the TPM (after every change)", trustSealLong, trustSealCmd},
			{"status", "Say what is sealed, and whether the files on disk still match", trustStatusLong, trustStatusCmd},
		}, nil},
		group{"bundle", "Carry signatures to air-gapped nodes", bundleLong, []leaf{
			{"export IMAGE@DIGEST... -o FILE", "Write images' signature material to one file, where the registry is reachable", bundleExportLong, bundleExport},
			{"import FILE|DIR", "Load exported material (or cosign save --dir) into the node's bundle store", bundleImportLong, bundleImport},
		}, nil},
		group{"cache", "List or purge the persisted verdicts", cacheLong, []leaf{
			{"list", "List the persisted verdicts whose MAC verifies", cacheListLong, cacheCmd("list")},
			{"purge", "Remove every persisted verdict (sealgate run must be stopped)", cachePurgeLong, cacheCmd("purge")},
		}, nil},
		group{"log", "Check the hash-chained decision log", logLong, []leaf{
			{"verify [FILE...]", "Check that no decision line was removed, edited, reordered or cut off", logVerifyLong, logVerifyCmd},
		}, nil},
		attestGroup(),
		leaf{"verify-pull --name IMAGE --digest DIGEST", "containerd's image verifier: decide on an image before it is pulled", verifyPullLong, verifyPullCmd},
		leaf{"doctor", "Check what decides whether an unverified container can run on this node", doctorLong, doctorCmd},
		leaf{"version", "Print the version, the commit and the Go version it was built with", "", versionCmd},
		leaf{"man --dir DIR", "Write the man pages of every command into DIR", manLong, manCmd},
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
		args = []string{"run"}
	}
	if len(args) > 0 && isImageVerifierCall(args) {
		// Run by containerd's bindir image verifier, which passes only
		// its own flags (-name, -digest, -stdin-media-type).
		args = append([]string{"verify-pull"}, args...)
	}
	code := exitOK
	root := newRoot(stdout, stderr, &code)
	root.SetArgs(goStyleFlags(root, args))
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "sealgate: %v\n", err)
		if c, _, ferr := root.Find(args); ferr == nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", c.CommandPath())
		}
		return exitUsage
	}
	return code
}

const rootLong = `sealgate is a node-level image-signature gate: an NRI plugin that the
container runtime asks before every container is created. It verifies cosign
and Sigstore signatures and attestations against a trust store sealed in the
node's TPM, and keeps enforcing from TPM-authenticated verdicts offline.`

// newRoot builds the command tree; the exit status of what runs is
// written to code.
func newRoot(stdout, stderr io.Writer, code *int) *cobra.Command {
	root := &cobra.Command{
		Use:           "sealgate",
		Short:         "Node-level image-signature gate for containerd and CRI-O",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       version,
		Args:          cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q", args[0])
			}
			// No command: the help is the answer to a mistake, on stderr.
			c.SetOut(stderr)
			_ = c.Usage()
			*code = exitUsage
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate(versionText())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	for _, c := range commands() {
		switch c := c.(type) {
		case leaf:
			root.AddCommand(c.command(code))
		case group:
			root.AddCommand(c.command(code))
		}
	}
	root.AddCommand(verifierCommand(code))
	return root
}

// verifierCommand is the verifier process `sealgate run` starts with
// --verifier-process: it reads what to check from its standard input and
// answers on its standard output (plugin/checkproc), so it is hidden.
func verifierCommand(code *int) *cobra.Command {
	return &cobra.Command{
		Use:    "verifier",
		Short:  "The verifier process of sealgate run (not for people)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			// The protocol owns standard output: anything else this
			// process prints goes to standard error, the daemon's log.
			out := os.Stdout
			os.Stdout = os.Stderr
			if err := verifier.Serve(c.Context(), os.Stdin, out); err != nil {
				fmt.Fprintf(c.ErrOrStderr(), "sealgate verifier: %v\n", err)
				*code = exitFailed
			}
			return nil
		},
	}
}

func (l leaf) command(code *int) *cobra.Command {
	var run runFunc
	c := &cobra.Command{
		Use:   l.use,
		Short: l.short,
		Long:  l.long,
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, pos []string) error {
			*code = run(c.Context(), pos, c.OutOrStdout(), c.ErrOrStderr())
			return nil
		},
	}
	c.Flags().SortFlags = false
	run = l.setup(c.Flags(), lazyStderr{c})
	return c
}

func (g group) command(code *int) *cobra.Command {
	c := &cobra.Command{
		Use:   g.use,
		Short: g.short,
		Long:  g.long,
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown subcommand %q", args[0])
			}
			c.SetOut(c.ErrOrStderr())
			_ = c.Usage()
			*code = exitUsage
			return nil
		},
	}
	if g.setup != nil {
		var run runFunc
		c.RunE = func(c *cobra.Command, pos []string) error {
			*code = run(c.Context(), pos, c.OutOrStdout(), c.ErrOrStderr())
			return nil
		}
		c.Flags().SortFlags = false
		run = g.setup(c.Flags(), lazyStderr{c})
	}
	for _, s := range g.subs {
		c.AddCommand(s.command(code))
	}
	return c
}

// lazyStderr is a command's standard error, looked up when written to:
// flags are registered before the streams are known.
type lazyStderr struct{ c *cobra.Command }

func (l lazyStderr) Write(p []byte) (int, error) { return l.c.ErrOrStderr().Write(p) }

// goStyleFlags rewrites -name to --name where name is a long flag of the
// command args run: Go's flag package, which sealgate used before, and
// containerd's image verifier (-name, -digest) write long flags with one
// dash.
func goStyleFlags(root *cobra.Command, args []string) []string {
	c, _, err := root.Find(args)
	if err != nil {
		return args
	}
	c.InitDefaultHelpFlag()
	root.InitDefaultVersionFlag()
	out := append([]string(nil), args...)
	for i, a := range out {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if c.Flags().Lookup(name) != nil || c.InheritedFlags().Lookup(name) != nil || (c == root && name == "version") {
			out[i] = "-" + a
		}
	}
	return out
}

// versionText is the version, the commit and the Go version, from the
// build information the Go toolchain records.
func versionText() string {
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
	return fmt.Sprintf("sealgate %s\ncommit %s%s\n%s\n", v, commit, dirty, goVersion)
}

func versionCmd(_ *pflag.FlagSet, _ io.Writer) runFunc {
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "sealgate version: unexpected argument %q\n", pos[0])
			return exitUsage
		}
		fmt.Fprint(stdout, versionText())
		return exitOK
	}
}

// launchedByRuntime reports whether the container runtime started this
// process from its plugin folder: it then passes the connection and the
// plugin's name and index in the environment.
func launchedByRuntime() bool {
	return os.Getenv(api.PluginSocketEnvVar) != ""
}
