// Package policy parses, validates and matches sealgate's policy file: which
// images must carry which signatures, per image glob and namespace.
//
// Parsing is strict (unknown keys, duplicate keys and bad values are errors
// naming the file, line and key) because the policy decides verdicts: a typo
// that silently relaxed a rule would be a hole in the gate.
package policy

import (
	"crypto"
	"crypto/x509"
	"regexp"
	"strings"
	"time"
)

// Mode says what happens to an image that fails its rule.
type Mode string

const (
	// ModeEnforce denies the container.
	ModeEnforce Mode = "enforce"
	// ModeWarn allows it and logs a warning with what enforce would have done.
	ModeWarn Mode = "warn"
	// ModeAudit allows it and records the would-be denial at info level.
	ModeAudit Mode = "audit"
)

// Action is what a rule (or the policy default) does with a matching image.
type Action string

const (
	// ActionVerify requires the rule's signatures (the default for a rule with signatures).
	ActionVerify Action = "verify"
	// ActionAllow allows without signatures; every such decision is audited.
	ActionAllow Action = "allow"
	// ActionDeny refuses the image outright.
	ActionDeny Action = "deny"
)

// SignedIdentity says how the `docker-reference` of a signed payload must
// relate to the image being decided.
type SignedIdentity string

const (
	// MatchRepository requires the payload's reference to name the image's
	// repository (tag and digest ignored). This is the default.
	MatchRepository SignedIdentity = "matchRepository"
	// MatchAny accepts a payload whatever repository it names (for images
	// copied between registries after signing). The digest must still match.
	MatchAny SignedIdentity = "any"
	// MatchExact requires the payload's reference to be the image's
	// reference exactly: the same repository and tag (or, for an image
	// named by digest, the same digest), as containers/image defines it.
	MatchExact SignedIdentity = "matchExact"
	// RemapIdentity maps the image's repository from Remap.Prefix to
	// Remap.SignedPrefix (a mirror that serves images signed under their
	// upstream name) and then requires MatchRepository; an image outside
	// Prefix is matched as MatchRepository.
	RemapIdentity SignedIdentity = "remapIdentity"
)

// Remap is the prefix rewriting of RemapIdentity. Both are canonical
// repository prefixes: a registry host, optionally with path components.
type Remap struct {
	Prefix       string
	SignedPrefix string
}

// Apply rewrites repository when it lies under Prefix (at a path
// component boundary), and reports whether it did.
func (r *Remap) Apply(repository string) (string, bool) {
	if r == nil {
		return repository, false
	}
	if repository == r.Prefix {
		return r.SignedPrefix, true
	}
	if rest, ok := strings.CutPrefix(repository, r.Prefix+"/"); ok {
		return r.SignedPrefix + "/" + rest, true
	}
	return repository, false
}

// Policy is a parsed, validated policy file. It is immutable once returned.
type Policy struct {
	// Path is the file the policy came from, as given to Load or Parse.
	Path string
	// Digest is "sha256:<hex>" over the policy bytes and every file it
	// references (keys, roots), so that a verdict cached under one policy is
	// never reused under another.
	Digest string
	// Mode is the policy-wide mode; a rule may override it.
	Mode Mode
	// Default is what an image that no rule matches gets: ActionAllow or ActionDeny.
	Default Action
	// Offline bounds how cached verdicts serve while sources are unreachable.
	Offline Offline
	// TrustedRoots are absolute paths of Sigstore trusted_root.json files
	// (`trustedRoot`, a string or a list), checked to exist at load.
	TrustedRoots []string
	// PEMRoots is trustedRoot given as PEM files (a mapping), or nil.
	PEMRoots *PEMRoots
	// Rules in file order; the first match wins.
	Rules []*Rule

	files    []string          // absolute paths of referenced files, sorted
	fileData map[string][]byte // their content as parsed and digested
	raw      []byte            // the policy's own bytes as parsed
}

// Bytes returns the policy's bytes exactly as parsed: with Path and every
// file's FileData they parse again to a policy of the same Digest, so that
// another process (the verifier) enforces what this one checked.
func (p *Policy) Bytes() []byte { return p.raw }

// Files returns the absolute paths of every file the policy references
// (keys and trusted roots), sorted, without duplicates: the files whose
// content Digest covers besides the policy itself.
func (p *Policy) Files() []string { return append([]string(nil), p.files...) }

// FileData returns the content of a referenced file exactly as the policy
// read and digested it, so that whoever uses it (the trusted roots) uses
// those bytes and never reads the file again.
func (p *Policy) FileData(path string) ([]byte, bool) {
	b, ok := p.fileData[path]
	return b, ok
}

// Offline holds the `offline` section.
type Offline struct {
	// MaxVerdictAge is how long a cached verdict may serve while every
	// signature source is unreachable. Zero means cached verdicts never
	// serve offline.
	MaxVerdictAge time.Duration
}

// Rule is one entry of `rules`.
type Rule struct {
	Name string
	// Line is the line of the rule in the policy file, for messages.
	Line int
	// Images are the rule's image globs, normalised (registry explicit).
	Images []string
	// Namespaces are namespace globs; empty means every namespace.
	Namespaces []string
	// Action is ActionVerify, ActionAllow or ActionDeny.
	Action Action
	// Mode is the rule's effective mode (its own `mode`, else the policy's).
	Mode Mode
	// Signatures is set when Action is ActionVerify and the rule has a
	// `signatures` section.
	Signatures *Signatures
	// Attestations must each be satisfied (verified from issue 3 on).
	Attestations []*Attestation

	// Compiled Images and Namespaces, set by Parse.
	images, namespaces []*glob
}

// Signatures is a rule's `signatures` section.
type Signatures struct {
	// Threshold is how many distinct authorities must each have signed
	// (default 1, at most len(Authorities)).
	Threshold int
	// Authorities that may sign; any Threshold of them satisfies the rule.
	Authorities []*Authority
	// SignedIdentity checks the payload's docker-reference; default MatchRepository.
	SignedIdentity SignedIdentity
	// Remap is set with SignedIdentity RemapIdentity.
	Remap *Remap
	// AcceptPlatformSignature lets a signature over the node's platform
	// manifest satisfy a rule when the image digest is an index. By default
	// only a signature over the index itself does.
	AcceptPlatformSignature bool
}

// TransparencyLog says whether an authority's signatures must have been
// entered in a transparency log (Rekor) whose key is in the trust store.
type TransparencyLog string

const (
	// TlogRequired: a signature counts only with a verified log entry
	// (signed entry timestamp or inclusion proof). Default for keyless,
	// and for a key authority that names a rekorKey.
	TlogRequired TransparencyLog = "required"
	// TlogOptional: a log entry is verified when present, not required.
	// Default for a key authority without rekorKey.
	TlogOptional TransparencyLog = "optional"
)

// Authority is one trusted signer: exactly one of Key, Keyless and
// Certificate is set.
type Authority struct {
	// Name identifies the authority in messages and reports, e.g.
	// "key keys/release.pub", "keyless https://issuer subject" or
	// "certificate ca/root.pem subject".
	Name        string
	Key         *KeyAuthority
	Keyless     *KeylessAuthority
	Certificate *CertificateAuthority
	// TransparencyLog is the authority's effective `transparencyLog`.
	TransparencyLog TransparencyLog
	// SkipSCT is `ctlog: skip` on a keyless authority: its certificates
	// need no signed certificate timestamp. Otherwise one from a CT log of
	// the trusted root is required, and a root without CT logs is a policy
	// error, never a silent downgrade.
	SkipSCT bool
}

// KeyAuthority is a public key read from the trust store.
type KeyAuthority struct {
	// Path is the path as written in the policy.
	Path string
	// File is the absolute path that was read.
	File string
	// PEM is the file's content.
	PEM []byte
	// PublicKey is the parsed key (ECDSA P-256/P-384, Ed25519 or RSA).
	PublicKey crypto.PublicKey
	// Rekor is the authority's `rekorKey`: the public key of the Rekor log
	// that must hold the signature's entry. Nil when not given (then the
	// Rekor logs of the trusted roots are used when an entry is present).
	Rekor *PublicKeyFile
}

// PublicKeyFile is a PEM public key read from the trust store.
type PublicKeyFile struct {
	Path      string // as written in the policy
	File      string // absolute path read
	PEM       []byte
	PublicKey crypto.PublicKey
}

// KeylessAuthority is a Fulcio certificate identity. Issuer and Subject are
// required (exact or regular expression); the Fulcio certificate extensions
// are optional and, when set, must match too.
type KeylessAuthority struct {
	Issuer        string
	IssuerRegExp  *regexp.Regexp
	Subject       string
	SubjectRegExp *regexp.Regexp
	// SourceRepositoryURI is Fulcio's extension 1.3.6.1.4.1.57264.1.12.
	SourceRepositoryURI StringMatch
	// SourceRepositoryRef is Fulcio's extension 1.3.6.1.4.1.57264.1.14.
	SourceRepositoryRef StringMatch
	// BuildSignerURI is Fulcio's extension 1.3.6.1.4.1.57264.1.9 (the
	// workflow that signed, e.g. .../.github/workflows/release.yml@refs/tags/v1).
	BuildSignerURI StringMatch
	// GitHubWorkflowRepository and GitHubWorkflowRef are Fulcio's
	// deprecated GitHub extensions 1.3.6.1.4.1.57264.1.5 (owner/name) and
	// .1.6 (the ref), which cosign's --certificate-github-workflow-*
	// flags check.
	GitHubWorkflowRepository StringMatch
	GitHubWorkflowRef        StringMatch
}

// SigningTime says at which time a certificate from the operator's own CA
// must have been valid.
type SigningTime string

const (
	// SigningTimeTimestamp: at a verified signing time, from a TSA
	// timestamp or a transparency-log entry of the trusted root; a
	// signature with neither is denied. The default.
	SigningTimeTimestamp SigningTime = "timestamp"
	// SigningTimeVerification: at a verified signing time when the
	// signature carries one, otherwise at the time of verification, for
	// long-lived certificates signed without a timestamp. Written in the
	// policy only; such a verdict holds only while the certificate is
	// valid and is never kept for offline use.
	SigningTimeVerification SigningTime = "verificationTime"
)

// CertificateAuthority is the operator's own certificate authority (not
// Fulcio): signing certificates chain to one of Roots through
// Intermediates (the chain a signature carries is not trusted), carry the
// code-signing usage and a SAN matching Subject. No SCT is asked for.
type CertificateAuthority struct {
	// Roots are self-signed CA certificates; Intermediates are CA
	// certificates between them and the signing certificate.
	Roots, Intermediates []*x509.Certificate
	// Files are the PEM files they were read from, as written.
	Files []string
	// Subject matches any email, URI or DNS SAN of the certificate.
	Subject StringMatch
	// Issuer, when set, matches the Fulcio OIDC issuer extension, which
	// the certificate must then carry.
	Issuer StringMatch
	// SigningTime is when the certificate must have been valid.
	SigningTime SigningTime
}

// StringMatch matches a certificate field exactly or by regular
// expression; the zero value matches anything.
type StringMatch struct {
	Exact  string
	RegExp *regexp.Regexp
}

// IsZero reports whether m places no constraint.
func (m StringMatch) IsZero() bool { return m.Exact == "" && m.RegExp == nil }

// Match reports whether s satisfies m.
func (m StringMatch) Match(s string) bool {
	switch {
	case m.RegExp != nil:
		return m.RegExp.MatchString(s)
	case m.Exact != "":
		return s == m.Exact
	}
	return true
}

// String describes m for messages.
func (m StringMatch) String() string {
	if m.RegExp != nil {
		return "~" + m.RegExp.String()
	}
	return m.Exact
}

// Attestation is one entry of a rule's `attestations`: satisfied only by an
// in-toto statement of exactly PredicateType whose subject names the image
// digest, signed by one of Authorities, for which every condition holds.
type Attestation struct {
	PredicateType string
	Authorities   []*Authority
	// Conditions are CEL expressions over the statement, compiled at load.
	Conditions []*Condition
	// Line is the entry's line in the policy file, for messages.
	Line int
}

// PEMRoots are Sigstore trust roots given as PEM files instead of a
// trusted_root.json, as cosign and containers/image take them: Fulcio CA
// chains, Rekor and CT log public keys, TSA chains, each with an optional
// validity window.
type PEMRoots struct {
	Fulcio []PEMMaterial
	Rekor  []PEMMaterial
	CTLogs []PEMMaterial
	TSA    []PEMMaterial
}

// PEMMaterial is one PEM file of PEMRoots and the window it is trusted in
// (zero times: unbounded).
type PEMMaterial struct {
	File       string
	PEM        []byte
	ValidFrom  time.Time
	ValidUntil time.Time
}

// HasSigstoreRoots reports whether the policy names Sigstore trust roots
// in either form.
func (p *Policy) HasSigstoreRoots() bool { return len(p.TrustedRoots) > 0 || p.PEMRoots != nil }
