package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// adhocFlags are cosign's verify and verify-attestation flags, for a check
// without a policy file: they are turned into a one-rule policy that the
// same engine decides with.
type adhocFlags struct {
	key, identity, identityRE, issuer, issuerRE string
	ghRepository, ghRef                         string
	predicateType, trustedRoot                  string
	caRoots, caIntermediates                    string
	ignoreTlog, ignoreSCT                       bool
}

func (a *adhocFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.key, "key", "", "ad-hoc check, as cosign verify --key: a PEM public key file")
	fs.StringVar(&a.identity, "certificate-identity", "", "ad-hoc keyless check: the certificate's subject (SAN), exact")
	fs.StringVar(&a.identityRE, "certificate-identity-regexp", "", "ad-hoc keyless check: the certificate's subject, a regular expression")
	fs.StringVar(&a.issuer, "certificate-oidc-issuer", "", "ad-hoc keyless check: the OIDC issuer, exact")
	fs.StringVar(&a.issuerRE, "certificate-oidc-issuer-regexp", "", "ad-hoc keyless check: the OIDC issuer, a regular expression")
	fs.StringVar(&a.ghRepository, "certificate-github-workflow-repository", "", "ad-hoc keyless check: the GitHub repository (owner/name) the workflow ran in")
	fs.StringVar(&a.ghRef, "certificate-github-workflow-ref", "", "ad-hoc keyless check: the git ref the workflow ran on (refs/tags/v1)")
	fs.StringVar(&a.predicateType, "type", "", "ad-hoc check of an attestation of this predicate type (a URI, or cosign's short names: slsaprovenance, slsaprovenance02, slsaprovenance1, link, spdx, spdxjson, cyclonedx, vuln, openvex, custom)")
	fs.StringVar(&a.trustedRoot, "trusted-root", "", "ad-hoc check: Sigstore trusted_root.json (needed for keyless, and for a key unless --insecure-ignore-tlog)")
	fs.StringVar(&a.caRoots, "ca-roots", "", "ad-hoc check against your own CA, as cosign's flag: PEM file of its root certificates (with --certificate-identity[-regexp])")
	fs.StringVar(&a.caIntermediates, "ca-intermediates", "", "ad-hoc check against your own CA: PEM file of its intermediate certificates")
	fs.BoolVar(&a.ignoreTlog, "insecure-ignore-tlog", false, "ad-hoc check: do not require a transparency log entry, as cosign's flag")
	fs.BoolVar(&a.ignoreSCT, "insecure-ignore-sct", false, "ad-hoc keyless check: do not require the certificate's SCT, as cosign's flag")
}

// set reports whether any ad-hoc flag was given.
func (a *adhocFlags) set() bool {
	return a.key != "" || a.identity != "" || a.identityRE != "" || a.issuer != "" || a.issuerRE != "" ||
		a.ghRepository != "" || a.ghRef != "" || a.predicateType != "" || a.trustedRoot != "" || a.ignoreTlog || a.ignoreSCT ||
		a.caRoots != "" || a.caIntermediates != ""
}

// cosignPredicateTypes are cosign's short names for --type.
var cosignPredicateTypes = map[string]string{
	"slsaprovenance":   "https://slsa.dev/provenance/v0.2",
	"slsaprovenance02": "https://slsa.dev/provenance/v0.2",
	"slsaprovenance1":  "https://slsa.dev/provenance/v1",
	"link":             "https://in-toto.io/Link/v1",
	"spdx":             "https://spdx.dev/Document",
	"spdxjson":         "https://spdx.dev/Document",
	"cyclonedx":        "https://cyclonedx.org/bom",
	"vuln":             "https://cosign.sigstore.dev/attestation/vuln/v1",
	"openvex":          "https://openvex.dev/ns",
	"custom":           "https://cosign.sigstore.dev/attestation/v1",
}

// policy writes the one-rule policy the flags describe: every image, the
// authority the flags name, cosign's defaults (the digest must match, the
// repository need not; a transparency log entry is required unless
// --insecure-ignore-tlog). A mistake is an error naming the flag.
func (a *adhocFlags) policy() ([]byte, error) {
	keyless := a.identity != "" || a.identityRE != "" || a.issuer != "" || a.issuerRE != "" || a.ghRepository != "" || a.ghRef != ""
	ca := a.caRoots != "" || a.caIntermediates != ""
	switch {
	case ca && a.caRoots == "":
		return nil, fmt.Errorf("--ca-intermediates needs --ca-roots")
	case ca && a.key != "":
		return nil, fmt.Errorf("give either --key or --ca-roots")
	case ca && a.identity == "" && a.identityRE == "":
		return nil, fmt.Errorf("--ca-roots needs --certificate-identity or --certificate-identity-regexp (a SAN of the signing certificate)")
	case ca && (a.ghRepository != "" || a.ghRef != ""):
		return nil, fmt.Errorf("--ca-roots checks your own CA's certificates: the GitHub workflow flags apply to Fulcio certificates only")
	case a.key != "" && keyless:
		return nil, fmt.Errorf("give either --key or the --certificate-* flags, as cosign does")
	case a.key == "" && !keyless:
		return nil, fmt.Errorf("an ad-hoc check needs --key, or --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp]")
	case a.identity != "" && a.identityRE != "":
		return nil, fmt.Errorf("--certificate-identity and --certificate-identity-regexp exclude each other")
	case a.issuer != "" && a.issuerRE != "":
		return nil, fmt.Errorf("--certificate-oidc-issuer and --certificate-oidc-issuer-regexp exclude each other")
	case !ca && keyless && (a.identity == "" && a.identityRE == "" || a.issuer == "" && a.issuerRE == ""):
		return nil, fmt.Errorf("a keyless check needs --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp]")
	case !ca && keyless && a.trustedRoot == "":
		return nil, fmt.Errorf("a keyless check needs --trusted-root (sealgate never fetches Sigstore's roots)")
	case a.key != "" && a.ignoreSCT:
		return nil, fmt.Errorf("--insecure-ignore-sct applies to keyless checks only")
	case (a.key != "" || ca) && !a.ignoreTlog && a.trustedRoot == "":
		return nil, fmt.Errorf("cosign requires a transparency log entry: give --trusted-root, or --insecure-ignore-tlog")
	}
	q := strconv.Quote
	abs := func(p string) (string, error) {
		a, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		return q(a), nil
	}
	var auth strings.Builder
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&auth, "            %s: %s\n", k, q(v))
		}
	}
	switch {
	case a.key != "":
		k, err := abs(a.key)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&auth, "        - key: %s\n", k)
	case ca:
		// As cosign: the certificate is checked at a verified signing time
		// when the signature has one, else at the time of verification.
		auth.WriteString("        - certificate:\n            signingTime: verificationTime\n")
		for _, c := range []struct{ key, file string }{{"roots", a.caRoots}, {"intermediates", a.caIntermediates}} {
			if c.file == "" {
				continue
			}
			f, err := abs(c.file)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&auth, "            %s: %s\n", c.key, f)
		}
		field("issuer", a.issuer)
		field("issuerRegExp", a.issuerRE)
		field("subject", a.identity)
		field("subjectRegExp", a.identityRE)
	default:
		auth.WriteString("        - keyless:\n")
		field("issuer", a.issuer)
		field("issuerRegExp", a.issuerRE)
		field("subject", a.identity)
		field("subjectRegExp", a.identityRE)
		// As cosign: Fulcio's GitHub workflow extensions (1.5, 1.6).
		field("githubWorkflowRepository", a.ghRepository)
		field("githubWorkflowRef", a.ghRef)
	}
	tlog := "required"
	if a.ignoreTlog {
		tlog = "optional"
	}
	fmt.Fprintf(&auth, "          transparencyLog: %s\n", tlog)
	if a.ignoreSCT && !ca { // a certificate authority never asks for an SCT
		auth.WriteString("          ctlog: skip\n")
	}
	var b strings.Builder
	b.WriteString("mode: enforce\ndefault: deny\n")
	if a.trustedRoot != "" {
		r, err := abs(a.trustedRoot)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "trustedRoot: %s\n", r)
	}
	b.WriteString("rules:\n  - name: command-line\n    images: [\"**\"]\n")
	if a.predicateType != "" {
		pt := a.predicateType
		if long, ok := cosignPredicateTypes[pt]; ok {
			pt = long
		} else if !strings.Contains(pt, "://") {
			return nil, fmt.Errorf("--type %q: a predicate type URI, or one of cosign's short names", pt)
		}
		fmt.Fprintf(&b, "    attestations:\n      - predicateType: %s\n        authorities:\n%s", q(pt), indent(auth.String(), 2))
	} else {
		fmt.Fprintf(&b, "    signatures:\n      signedIdentity: any\n      authorities:\n%s", auth.String())
	}
	return []byte(b.String()), nil
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pad + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}
