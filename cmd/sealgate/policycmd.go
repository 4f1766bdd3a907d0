package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/policyimport"
)

const policyLong = `check parses a policy as the daemon does; import writes a sealgate policy
from another tool's.`

const policyCheckLong = `Parses each policy as the daemon does (strict YAML, every key, root and
certificate file it names read and checked), without a TPM or an image, and
says what it holds.

Exit status: 0 valid, 1 invalid, 2 usage.`

const policyImportLong = `Writes a sealgate policy from FILE: --from containers-policy
(containers-policy.json(5), CRI-O's and podman's policy.json) or
--from clusterimagepolicy (sigstore policy-controller's ClusterImagePolicy,
also read by Talos), with a comment for each thing that did not map. The
keys it names are to be copied into the trust store's keys/ (inline keys are
written there, beside -o FILE).

Exit status: 0 everything mapped, 1 something security-relevant did not (the
policy is still written, saying what), 2 usage or unreadable input.`

func policyCheck(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	return func(_ context.Context, files []string, stdout, stderr io.Writer) int {
		if len(files) == 0 {
			fmt.Fprintln(stderr, "sealgate policy check: give at least one FILE")
			return exitUsage
		}
		code := exitOK
		for _, f := range files {
			p, err := policy.Load(f)
			if err != nil {
				fmt.Fprintf(stdout, "%v\n", err)
				code = exitFailed
				continue
			}
			fmt.Fprintf(stdout, "%s: valid: mode %s, default %s, %s, %s named (digest %s)\n", f, p.Mode, p.Default,
				plural(len(p.Rules), "rule"), plural(len(p.Files()), "file"), p.Digest)
		}
		return code
	}
}

// policyImport is `sealgate policy import --from containers-policy FILE`.
func policyImport(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	from := fs.String("from", "", "the format of FILE: containers-policy (containers-policy.json(5), CRI-O's and podman's policy.json), or clusterimagepolicy (sigstore policy-controller's, also read by Talos)")
	var out string
	fs.StringVarP(&out, "out", "o", "", "write the sealgate policy to this file (default: standard output)")
	return func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "sealgate policy import: give exactly one FILE")
			return exitUsage
		}
		convert := map[string]func([]byte) (*policyimport.Result, error){
			"containers-policy":  policyimport.FromContainersPolicy,
			"clusterimagepolicy": policyimport.FromClusterImagePolicy,
		}[*from]
		if convert == nil {
			fmt.Fprintf(stderr, "sealgate policy import: --from %q: want containers-policy or clusterimagepolicy\n", *from)
			return exitUsage
		}
		data, err := os.ReadFile(pos[0])
		if err != nil {
			fmt.Fprintf(stderr, "sealgate policy import: %v\n", err)
			return exitUsage
		}
		res, err := convert(data)
		if err != nil && !errors.Is(err, policyimport.ErrIncomplete) {
			fmt.Fprintf(stderr, "sealgate policy import: %s: %v\n", pos[0], err)
			return exitUsage
		}
		if out == "" || out == "-" {
			_, _ = stdout.Write(res.YAML)
			for f := range res.Files {
				fmt.Fprintf(stderr, "note: %s is written only with -o FILE (beside it)\n", f)
			}
		} else {
			if werr := os.WriteFile(out, res.YAML, 0o644); werr != nil {
				fmt.Fprintf(stderr, "sealgate policy import: %v\n", werr)
				return exitUsage
			}
			for f, b := range res.Files {
				p := filepath.Join(filepath.Dir(out), filepath.FromSlash(f))
				werr := os.MkdirAll(filepath.Dir(p), 0o755)
				if werr == nil {
					werr = os.WriteFile(p, b, 0o644)
				}
				if werr != nil {
					fmt.Fprintf(stderr, "sealgate policy import: %v\n", werr)
					return exitUsage
				}
				fmt.Fprintf(stderr, "wrote %s\n", p)
			}
		}
		for _, n := range res.Notes {
			fmt.Fprintf(stderr, "note: %s\n", n)
		}
		for _, k := range res.Keys {
			fmt.Fprintf(stderr, "copy %s into the trust store as keys/%s\n", k, filepath.Base(k))
		}
		if errors.Is(err, policyimport.ErrIncomplete) {
			fmt.Fprintln(stderr, "sealgate policy import: NOT EQUIVALENT: something security-relevant did not map (see the notes); review the policy before sealing it")
			return exitFailed
		}
		return exitOK
	}
}
