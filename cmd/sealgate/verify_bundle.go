package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/verify"
)

// maxBundleFile bounds what verify-bundle reads of a bundle file.
const maxBundleFile = 1 << 20

// verifyBundleCmd is the Sigstore conformance client protocol's
// verify-bundle: one blob (or its sha256 digest) against one bundle, with the
// same verification code the daemon uses for images.
const verifyBundleLong = `Verifies one Sigstore bundle over a file (or its sha256 digest) with the
verification code the daemon uses for images: --certificate-identity and
--certificate-oidc-issuer with --trusted-root, or --key. Nothing is fetched
over the network.

Exit status: 0 valid, 1 invalid, 2 usage or configuration error.`

func verifyBundleCmd(fs *pflag.FlagSet, stderr io.Writer) runFunc {
	bundleFile := fs.String("bundle", "", "Sigstore bundle (JSON) to verify")
	identity := fs.String("certificate-identity", "", "expected certificate subject (SAN), exact")
	issuer := fs.String("certificate-oidc-issuer", "", "expected certificate OIDC issuer, exact")
	keyFile := fs.String("key", "", "PEM public key, instead of a certificate identity")
	rootFile := fs.String("trusted-root", "", "Sigstore trusted_root.json (Fulcio, Rekor, CT logs, TSAs); required for keyless")
	output := fs.String("output", "text", "output format: text or json")
	return func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		usageErr := func(format string, a ...any) int {
			fmt.Fprintf(stderr, "sealgate verify-bundle: "+format+"\n", a...)
			return exitUsage
		}
		switch {
		case len(pos) != 1:
			return usageErr("give exactly one FILE or sha256:DIGEST to verify")
		case *bundleFile == "":
			return usageErr("--bundle is required")
		case (*keyFile == "") == (*identity == "" && *issuer == ""):
			return usageErr("give either --key, or --certificate-identity and --certificate-oidc-issuer")
		case *keyFile == "" && (*identity == "" || *issuer == ""):
			return usageErr("--certificate-identity and --certificate-oidc-issuer go together")
		case *keyFile == "" && *rootFile == "":
			return usageErr("keyless verification needs --trusted-root (sealgate never fetches roots over the network)")
		case *output != "text" && *output != "json":
			return usageErr("--output %q: want text or json", *output)
		}

		bundle, err := readBounded(*bundleFile, maxBundleFile)
		if err != nil {
			return usageErr("%v", err)
		}
		auth, err := bundleAuthority(*keyFile, *issuer, *identity)
		if err != nil {
			return usageErr("%v", err)
		}
		var opts []verify.Option
		if *rootFile != "" {
			opts = append(opts, verify.WithTrustedRootFiles(*rootFile))
		}
		v, err := verify.New(opts...)
		if err != nil {
			return usageErr("%v", err)
		}
		ref := verify.ArtifactRef{}
		if target := pos[0]; strings.HasPrefix(target, "sha256:") || strings.HasPrefix(target, "sha512:") {
			ref.Digest = target
		} else {
			f, err := os.Open(target)
			if err != nil {
				return usageErr("%v", err)
			}
			defer f.Close()
			ref.Data = f
		}
		sat, err := v.VerifyBlobBundle(ctx, bundle, ref, auth)
		if *output == "json" {
			out := struct {
				Valid     bool              `json:"valid"`
				Reason    string            `json:"reason,omitempty"`
				Satisfied *verify.Satisfier `json:"satisfiedBy,omitempty"`
			}{Valid: err == nil}
			if err != nil {
				out.Reason = err.Error()
			} else {
				out.Satisfied = &sat
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(out)
		} else if err != nil {
			fmt.Fprintf(stdout, "sealgate: bundle %s is not valid: %v\n", *bundleFile, err)
		} else {
			fmt.Fprintf(stdout, "sealgate: bundle %s is valid (%s)\n", *bundleFile, describeSatisfier(sat))
		}
		if err != nil {
			return exitDenied
		}
		return exitOK
	}
}

// bundleAuthority builds the one authority the command line names.
func bundleAuthority(keyFile, issuer, identity string) (*policy.Authority, error) {
	if keyFile == "" {
		return &policy.Authority{
			Name:            "keyless " + issuer + " " + identity,
			Keyless:         &policy.KeylessAuthority{Issuer: issuer, Subject: identity},
			TransparencyLog: policy.TlogRequired,
		}, nil
	}
	pem, err := readBounded(keyFile, 64<<10)
	if err != nil {
		return nil, err
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PEM public key: %w", keyFile, err)
	}
	abs, _ := filepath.Abs(keyFile)
	return &policy.Authority{
		Name:            "key " + keyFile,
		Key:             &policy.KeyAuthority{Path: keyFile, File: abs, PEM: pem, PublicKey: pub},
		TransparencyLog: policy.TlogOptional,
	}, nil
}

func describeSatisfier(s verify.Satisfier) string {
	parts := []string{s.Authority}
	if s.KeyID != "" {
		parts = append(parts, "key "+s.KeyID)
	}
	if s.Issuer != "" || s.Subject != "" {
		parts = append(parts, "issuer "+s.Issuer, "subject "+s.Subject)
	}
	if !s.SignedAt.IsZero() {
		parts = append(parts, "signed at "+s.SignedAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	if !s.ValidUntil.IsZero() {
		parts = append(parts, "certificate valid now (no signing time), until "+s.ValidUntil.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return strings.Join(parts, ", ")
}

// readBounded reads a file, refusing one larger than limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
