package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/node/verifier"
	"github.com/sealgate/sealgate/plugin/policy"
)

// verified is one image's outcome: the decision, and the tag it was named
// by when the digest was resolved at the registry.
type verified struct {
	decision.Decision
	// ResolvedTag is the tag resolved to Digest at the registry (the shell
	// resolves tags; the daemon never does).
	ResolvedTag string `json:"resolvedTag,omitempty"`
}

const verifyLong = `Decides as the daemon does: with the sealed trust store checked against the
TPM, and the daemon's persisted verdicts (read only). --policy FILE tries a
policy file instead, unchecked. An image named by tag is resolved at the
registry and the digest printed (the daemon itself never trusts a tag).

Without a policy, cosign's flags check one authority over every image given:
--key FILE; or --certificate-identity[-regexp] and
--certificate-oidc-issuer[-regexp] with --trusted-root; or --ca-roots with
--certificate-identity[-regexp] for your own CA. --type checks an
attestation. As with cosign, the digest must match, the repository need not,
and a transparency log entry is required unless --insecure-ignore-tlog.

Exit status: 0 every image allowed, 1 one or more denied, 2 usage or
configuration error.`

func verifyCmd(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	var nf nodeFlags
	nf.registerAnchor(fs, "the daemon's persisted verdicts (read, never written)")
	nf.registerEngine(fs, "decide with the trust store's policy as it is on disk, unchecked")
	namespace := fs.String("namespace", "default", "namespace of the pod, for rules that match namespaces")
	digest := fs.String("digest", "", "the digest to decide on, for one IMAGE named by tag (otherwise the tag is resolved at the registry)")
	output := fs.String("output", "text", "output format: text or json")
	var adhoc adhocFlags
	adhoc.register(fs)
	return func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		usageErr := func(format string, a ...any) int {
			fmt.Fprintf(stderr, "sealgate verify: "+format+"\n", a...)
			return exitUsage
		}
		switch {
		case len(pos) == 0:
			return usageErr("give at least one IMAGE")
		case *output != "text" && *output != "json":
			return usageErr("--output %q: want text or json", *output)
		case *digest != "" && len(pos) != 1:
			return usageErr("--digest pins the digest of one IMAGE; give the others as IMAGE@DIGEST")
		}
		if *digest != "" {
			if _, err := v1.NewHash(*digest); err != nil {
				return usageErr("--digest %q: want sha256:<64 hex digits> (%v)", *digest, err)
			}
		}
		for _, image := range pos {
			if _, err := policy.ParseImage(image); err != nil {
				return usageErr("%q is not an image reference: %v", image, err)
			}
			if i := strings.LastIndex(image, "@"); i >= 0 {
				if _, err := v1.NewHash(image[i+1:]); err != nil {
					return usageErr("%s: the digest after @ is malformed: want sha256:<64 hex digits> (%v)", image, err)
				}
			}
		}
		// The daemon's node, opened read-only; --policy tries a file instead,
		// and cosign's flags a policy written from them, unchecked.
		nf.cfg.Access = node.Inspect
		if adhoc.set() {
			if nf.cfg.PolicyFile != "" {
				return usageErr("give either --policy or cosign's flags (--key, --certificate-*)")
			}
			text, err := adhoc.policy()
			if err != nil {
				return usageErr("%v", err)
			}
			nf.cfg.PolicyFile, nf.cfg.PolicyBytes = "(command-line flags)", text
			nf.cfg.BundleStore = ""
		}
		if nf.cfg.PolicyFile != "" {
			nf.cfg.InsecureNoTPM = true
		}
		n, err := node.Open(nf.cfg)
		if err != nil {
			return usageErr("%v", err)
		}
		defer n.Close()

		var out []verified
		denied := false
		for _, image := range pos {
			v := verified{}
			req := decision.Request{Image: image, Digest: *digest, Namespace: *namespace}
			if req.Digest == "" && !strings.Contains(image, "@") {
				d, err := resolveTag(ctx, nf.cfg, image)
				if err != nil {
					return usageErr("%v (or give IMAGE@sha256:... or --digest)", err)
				}
				req.Digest, v.ResolvedTag = d, image
			}
			v.Decision = n.Engine().Decide(ctx, req)
			denied = denied || !v.Allowed
			out = append(out, v)
		}
		if *output == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			var doc any = out
			if len(out) == 1 {
				doc = out[0]
			}
			if err := enc.Encode(doc); err != nil {
				return usageErr("%v", err)
			}
		} else {
			for _, v := range out {
				if v.ResolvedTag != "" {
					fmt.Fprintf(stdout, "resolved %s to %s at the registry\n", v.ResolvedTag, v.Digest)
				}
				printText(stdout, v.Decision)
			}
		}
		if denied {
			return exitDenied
		}
		return exitOK
	}
}

// resolveTag asks the registry, as the node's sources reach it (hosts.toml,
// credentials), which digest the tag of image names now.
func resolveTag(ctx context.Context, cfg node.Config, image string) (string, error) {
	tag, err := name.NewTag(image, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("%s: %w", image, err)
	}
	reg, err := verifier.NewRegistry(cfg)
	if err != nil {
		return "", err
	}
	return reg.Resolve(ctx, tag)
}

func printText(w io.Writer, d decision.Decision) {
	if err := d.Err(); err != nil {
		fmt.Fprintln(w, err)
		return
	}
	verdict := "allowed"
	if d.WouldDeny {
		verdict = "allowed by " + d.Mode + " mode (enforce would deny)"
	}
	fmt.Fprintf(w, "sealgate: %s %s (rule %s, source %s)\n", verdict, d.Ref(), d.Rule, d.Source)
	for _, r := range d.Reasons {
		fmt.Fprintf(w, "  - %s\n", r)
	}
	// Each requirement of the rule, with what satisfied it.
	for _, s := range d.SatisfiedBy {
		req := s.Requirement
		if s.PredicateType != "" && s.Kind == "attestation" {
			req += " " + s.PredicateType
		}
		who := s.Authority
		switch {
		case s.KeyID != "":
			who += " (key " + s.KeyID + ")"
		case s.Subject != "" && s.Issuer != "":
			who += " (" + s.Issuer + " " + s.Subject + ")"
		case s.Subject != "":
			who += " (" + s.Subject + ")"
		}
		line := fmt.Sprintf("  %s: satisfied by %s, %s over %s", req, who, s.Kind, s.Digest)
		if !s.SignedAt.IsZero() {
			line += ", signed " + s.SignedAt.UTC().Format("2006-01-02T15:04:05Z")
		}
		if !s.ValidUntil.IsZero() {
			line += ", certificate valid now (no signing time), until " + s.ValidUntil.UTC().Format("2006-01-02T15:04:05Z")
		}
		fmt.Fprintln(w, line)
	}
}
