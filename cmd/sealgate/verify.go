package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"io"
	"strings"

	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/policy"
)

func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sealgate verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf nodeFlags
	nf.registerAnchor(fs, "the daemon's persisted verdicts (read, never written)")
	nf.registerEngine(fs, "decide with the trust store's policy as it is on disk, unchecked")
	namespace := fs.String("namespace", "default", "namespace of the pod, for rules that match namespaces")
	digest := fs.String("digest", "", "digest to decide on when IMAGE carries none (sealgate never trusts a tag)")
	output := fs.String("output", "text", "output format: text or json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sealgate verify IMAGE[@DIGEST] [--digest DIGEST] [--trust-dir DIR --tpm SPEC | --policy FILE] [--namespace NS] [--output text|json]")
		fmt.Fprintln(stderr, "\nDecides as the daemon does: with the sealed trust store checked against the TPM, and the daemon's\npersisted verdicts (read only). --policy FILE tries a policy file instead, unchecked.")
		fmt.Fprintln(stderr, "\nExit status: 0 allowed, 1 denied, 2 usage or configuration error.")
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "sealgate verify: give exactly one IMAGE")
		fs.Usage()
		return exitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "sealgate verify: --output %q: want text or json\n", *output)
		return exitUsage
	}
	image := pos[0]
	if *digest == "" && !strings.Contains(image, "@") {
		fmt.Fprintf(stderr, "sealgate verify: %s has no digest; give IMAGE@sha256:... or --digest (a tag is never trusted)\n", image)
		return exitUsage
	}
	// A malformed reference or digest is a usage error, not a denial.
	if *digest != "" {
		if _, err := v1.NewHash(*digest); err != nil {
			fmt.Fprintf(stderr, "sealgate verify: --digest %q: want sha256:<64 hex digits> (%v)\n", *digest, err)
			return exitUsage
		}
	}
	if _, err := policy.ParseImage(image); err != nil {
		fmt.Fprintf(stderr, "sealgate verify: %q is not an image reference: %v\n", image, err)
		return exitUsage
	}
	if i := strings.LastIndex(image, "@"); i >= 0 {
		if _, err := v1.NewHash(image[i+1:]); err != nil {
			fmt.Fprintf(stderr, "sealgate verify: %s: the digest after @ is malformed: want sha256:<64 hex digits> (%v)\n", image, err)
			return exitUsage
		}
	}
	// The daemon's node, opened read-only; --policy tries a file instead,
	// unchecked.
	nf.cfg.Access = node.Inspect
	if nf.cfg.PolicyFile != "" {
		nf.cfg.InsecureNoTPM = true
	}
	n, err := node.Open(nf.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "sealgate verify: %v\n", err)
		return exitUsage
	}
	defer n.Close()
	d := n.Engine().Decide(ctx, decision.Request{Image: image, Digest: *digest, Namespace: *namespace})
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			fmt.Fprintf(stderr, "sealgate verify: %v\n", err)
			return exitUsage
		}
	} else {
		printText(stdout, d)
	}
	if !d.Allowed {
		return exitDenied
	}
	return exitOK
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
}
