package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/internal/strictjson"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/runtimegate"
)

// descriptorMediaType is what containerd's bindir verifier passes on stdin.
const descriptorMediaType = "application/vnd.oci.descriptor.v1+json"

// isImageVerifierCall reports whether containerd's bindir image verifier
// ran the binary (it passes -name, -digest and -stdin-media-type, in any
// order, and nothing else).
func isImageVerifierCall(args []string) bool {
	a := strings.TrimLeft(args[0], "-")
	a, _, _ = strings.Cut(a, "=")
	return strings.HasPrefix(args[0], "-") && (a == "name" || a == "digest" || a == "stdin-media-type")
}

// verifyPullCmd is containerd's image verifier (plugin
// io.containerd.image-verifier.v1.bindir, with this binary, or a link to
// it, in bin_dir): exit 0 lets the pull proceed, 1 refuses it, and stdout
// is the reason containerd reports. The running daemon decides, with its
// engine and cache, so the verdict is in place before any container of
// the image exists. When the daemon does not answer, the image is decided
// here, from the sealed trust store and the daemon's verdicts (read only),
// exactly as `sealgate verify` does; nothing that cannot be decided is let
// through.
const verifyPullLong = `containerd's image verifier (plugin io.containerd.image-verifier.v1.bindir,
with this binary, or a link to it, in bin_dir): exit 0 lets the pull
proceed, 1 refuses it, and standard output is the reason containerd
reports. The running daemon decides; when it does not answer, the image is
decided here from the sealed trust store, and nothing that cannot be
decided is let through.`

func verifyPullCmd(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	image := fs.String("name", "", "the image reference about to be pulled")
	digest := fs.String("digest", "", "its resolved manifest digest")
	mediaType := fs.String("stdin-media-type", "", "media type of the descriptor on standard input")
	socket := fs.String("gate-socket", envOr(runtimegate.SocketEnv, runtimegate.DefaultSocket), "the daemon's socket")
	var nf nodeFlags
	nf.registerAnchor(fs, "the daemon's persisted verdicts (read, never written)")
	return func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		refuse := func(format string, a ...any) int {
			fmt.Fprintf(stdout, "sealgate: pull refused: "+format+"\n", a...)
			return exitDenied
		}
		if *image == "" || *digest == "" {
			return refuse("containerd passed no -name or -digest")
		}
		if *mediaType != "" {
			if *mediaType != descriptorMediaType {
				return refuse("standard input is %q; this sealgate reads %s", *mediaType, descriptorMediaType)
			}
			var desc struct {
				Digest string `json:"digest"`
			}
			b, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
			if err == nil {
				err = strictjson.Check(b, 16)
			}
			if err == nil {
				err = json.Unmarshal(b, &desc)
			}
			if err != nil {
				return refuse("the descriptor on standard input: %v", err)
			}
			if desc.Digest != *digest {
				return refuse("the descriptor names %s, -digest %s", desc.Digest, *digest)
			}
		}

		a, err := runtimegate.Ask(*socket, runtimegate.Request{Op: runtimegate.OpPull, Image: *image, Digest: *digest}, 9*time.Second)
		if err == nil {
			if !a.Allowed {
				return refuse("%s", a.Reason)
			}
			fmt.Fprintf(stdout, "sealgate: %s@%s verified by the running sealgate%s\n", *image, *digest, suffix(a.Reason))
			return exitOK
		}
		if !daemonAbsent(err) {
			return refuse("the running sealgate did not answer: %v", err)
		}
		// The daemon is not running: decide as it would.
		nf.cfg.Access = node.Inspect
		nf.cfg.BundleStore = node.DefaultBundleStore
		nf.cfg.RegistryCredentials = node.DefaultRegistryCredentials
		nf.cfg.CRIOConfig, nf.cfg.CRIOConfigDir = node.DefaultCRIOConfig, node.DefaultCRIOConfigDir
		n, err := node.Open(nf.cfg)
		if err != nil {
			return refuse("sealgate is not running and the trust store cannot be opened: %v", err)
		}
		defer n.Close()
		ctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		defer cancel()
		d := n.Engine().Decide(ctx, decision.Request{Image: *image, Digest: *digest})
		if err := d.Err(); err != nil {
			return refuse("%v", err)
		}
		fmt.Fprintf(stdout, "sealgate: %s@%s allowed (rule %s, source %s; decided without the daemon)\n", *image, *digest, d.Rule, d.Source)
		return exitOK
	}
}

// daemonAbsent reports whether err says nobody listens on the socket.
func daemonAbsent(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
