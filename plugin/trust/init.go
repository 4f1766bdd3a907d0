package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// starterPolicy is the policy `sealgate trust init` writes: warn mode, so
// that installing sealgate refuses nothing until the operator has seen what
// enforce would refuse, and deny by default, so that switching to enforce
// is safe.
const starterPolicy = `# sealgate policy: which images may run on this node, signed by whom.
# Written by ` + "`sealgate trust init`" + `. Reference: docs/policy.md.
#
# This file, keys/ and roots/ form the trust store. sealgate runs only with
# the trust store that was sealed to this node's TPM: after any change here,
# check and seal it again, or the daemon refuses to start:
#     sealgate trust seal      # checks this policy strictly, then seals
#     sealgate trust status    # what is sealed, and whether the files match
#
# The file is parsed strictly: an unknown or duplicate key, or a bad value,
# is an error naming the line and the key.

# Start in warn mode: nothing is refused, and every image that enforce mode
# would refuse is logged. Switch to enforce (and re-seal) once the log shows
# no such warnings.
mode: warn

# What an image that no rule matches gets.
default: deny

offline:
  # How long a verdict verified earlier may decide while the registry is
  # unreachable (edge and air-gapped nodes). 0s: never.
  maxVerdictAge: 168h

# Keyless (Fulcio) signatures need a Sigstore trusted root; put it in roots/
# and uncomment:
# trustedRoot: roots/trusted_root.json

rules:                       # the first rule that matches decides
  # The pod sandbox (pause) image the kubelet needs: allowed without
  # signatures, and every such decision is logged.
  - name: infra
    images: ["registry.k8s.io/pause:*", "registry.k8s.io/pause@*"]
    action: allow

  # Your images: signed with your release key (put it in keys/), or keyless
  # by your release workflow. Either authority satisfies the rule.
  # - name: myorg
  #   images: ["registry.example.com/myorg/**"]
  #   namespaces: ["*"]
  #   signatures:
  #     authorities:
  #       - key: keys/release.pub
  #       - keyless:
  #           issuer: https://token.actions.githubusercontent.com
  #           subjectRegExp: '^https://github\.com/myorg/.+@refs/tags/v.+$'
`

const keysReadme = `Public keys that policy.yaml names (key: keys/NAME.pub), PEM, as cosign
writes them (cosign generate-key-pair writes cosign.pub).

The policy and the files it names are sealed: changing or removing a named
key, or naming another one, takes effect only after ` + "`sealgate trust seal`" + `,
and until then the daemon refuses to start. A file the policy does not name
is neither sealed nor read. Re-sealing is how a key is rotated or revoked.
`

const rootsReadme = `Sigstore trusted roots (trusted_root.json) for keyless signatures, named by
policy.yaml (trustedRoot: roots/trusted_root.json). Get one with
` + "`cosign trusted-root create`" + ` or from the Sigstore TUF repository; sealgate
never fetches it.

The policy and the files it names are sealed: a change of a named root takes
effect only after ` + "`sealgate trust seal`" + `, and until then the daemon refuses
to start. A file the policy does not name is neither sealed nor read.
`

// Init writes a starter trust store into dir, which must be missing or
// empty: policy.yaml (warn mode, default deny, an allow rule for the pause
// image, a commented example rule with a key and a keyless authority), and
// keys/ and roots/, each with a README. It refuses a non-empty directory
// (wrapping fs.ErrExist) rather than mix its files with a trust store.
func Init(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	case err != nil:
		return fmt.Errorf("init: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("init: %s is not empty (%w); trust init writes a starter trust store into a new or empty directory (see what is there with `sealgate trust status --trust-dir %s`)", dir, fs.ErrExist, dir)
	}
	for _, d := range []string{"keys", "roots"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	for name, text := range map[string]string{
		PolicyName:                       starterPolicy,
		filepath.Join("keys", "README"):  keysReadme,
		filepath.Join("roots", "README"): rootsReadme,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	return nil
}
