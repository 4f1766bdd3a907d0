// Package verify is the only place in sealgate that checks signatures. It
// takes signature material exactly as a source found it (package artifact)
// and a rule's requirements (package policy), and says whether enough
// distinct trusted authorities signed the image, with one operator-readable
// reason for every signature that did not count.
//
// This build verifies cosign's classic key-based signatures (the
// `sha256-<digest>.sig` tag scheme, simple-signing payloads). Keyless
// authorities are recognised and reported as unsupported, never passed.
//
// The package never logs; everything a caller needs is in the Result.
package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

// keylessReason is the per-signature reason while keyless verification is
// not built in, so that a rule relying on it fails loudly, not silently.
const keylessReason = "keyless authorities are not supported by this build yet"

// Subject is the image a decision is about.
type Subject struct {
	// Repository is the normalised repository of the image being decided,
	// e.g. "127.0.0.1:5000/app" or "docker.io/library/nginx".
	Repository string
	// Digest is the "sha256:<hex>" manifest or index digest the signature
	// must cover.
	Digest string
}

// Result is the outcome of checking an image's signatures against a rule.
type Result struct {
	// Satisfied is true when at least Threshold distinct authorities
	// verified.
	Satisfied bool
	// By lists the distinct authorities that verified, in authority order.
	By []Satisfier
	// Reasons has one line per signature that did not count, and a summary
	// line when the rule is not satisfied.
	Reasons []string
}

// Satisfier records which authority, with which key, vouched for which
// digest, so that a verdict can be audited after the fact.
type Satisfier struct {
	// Authority is policy.Authority.Name.
	Authority string `json:"authority"`
	// KeyID is "sha256:<hex>" of the DER SubjectPublicKeyInfo of the key
	// that verified.
	KeyID string `json:"keyID,omitempty"`
	// Digest is the digest the signed payload names.
	Digest string `json:"digest,omitempty"`
}

type options struct{}

// Option configures a Verifier. Options are fixed when the Verifier is
// built (trusted roots will be one); requirements come with each call.
type Option func(*options) error

// Verifier checks signatures. It is safe for concurrent use and meant to
// live as long as the process: it keeps the verifier built for each key of
// each policy it has seen, for as long as that policy is in memory.
type Verifier struct {
	opts options
	keys keyCache
}

// New builds a Verifier. It takes no options yet; the pattern is kept so
// that trusted roots for keyless verification can be added without
// changing callers.
func New(opts ...Option) (*Verifier, error) {
	v := &Verifier{}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("new verifier: nil option")
		}
		if err := o(&v.opts); err != nil {
			return nil, fmt.Errorf("new verifier: %w", err)
		}
	}
	return v, nil
}

// VerifySignature checks one signature against one authority: the
// signature over the payload bytes first, then the payload's digest and
// identity against subject. Errors wrap ErrBadSignature, ErrPayload,
// ErrDigestMismatch, ErrReferenceMismatch or ErrUnsupported, and their text
// is a reason an operator can act on.
func (v *Verifier) VerifySignature(subject Subject, sig artifact.Signature, a *policy.Authority, identity policy.SignedIdentity) (Satisfier, error) {
	if a == nil {
		return Satisfier{}, reasonf(ErrUnsupported, "no authority given")
	}
	name := authorityName(a, 0)
	switch {
	case a.Keyless != nil:
		return Satisfier{}, reasonf(ErrUnsupported, keylessReason+" ("+name+")")
	case a.Key == nil:
		return Satisfier{}, reasonf(ErrUnsupported, name+": authority has neither key nor keyless")
	}
	if len(sig.Signature) == 0 {
		return Satisfier{}, errNoSignatureBytes
	}
	k := v.keys.get(a.Key)
	if k.err != nil {
		return Satisfier{}, reasonf(ErrUnsupported, name+": "+k.err.Error())
	}
	if !k.verify(sig.Signature, sig.Payload) {
		return Satisfier{}, reasonf(ErrBadSignature, "not signed by "+name)
	}
	p, err := checkPayload(sig.Payload, subject, identity)
	if err != nil {
		return Satisfier{}, err
	}
	return Satisfier{Authority: name, KeyID: k.id, Digest: p.Digest}, nil
}

var errNoSignatureBytes = reasonf(ErrBadSignature, "no signature bytes (the dev.cosignproject.cosign/signature annotation is missing or empty)")

// VerifySignatures checks every signature of an image against req and
// counts the distinct authorities that verified. Every signature is
// considered, so that a deny lists every reason at once; a signature that
// fails never stops the others. Two authorities with the same key count
// once, so a threshold cannot be met by one signer named twice.
//
// When ctx is done the remaining signatures are skipped and a reason says
// so; the result then reflects only the signatures already checked.
func (v *Verifier) VerifySignatures(ctx context.Context, subject Subject, sigs []artifact.Signature, req *policy.Signatures) Result {
	var res Result
	if req == nil {
		res.Reasons = []string{"the rule has no signatures section to verify against"}
		return res
	}
	auths := req.Authorities
	threshold := max(req.Threshold, 1)
	if len(auths) == 0 {
		res.Reasons = []string{"the rule lists no signature authorities"}
		return res
	}
	if !ValidDigest(subject.Digest) {
		res.Reasons = []string{fmt.Sprintf("image digest %q is not a sha256 or sha512 digest", truncate(subject.Digest, 80))}
		return res
	}
	if threshold > len(auths) {
		res.Reasons = append(res.Reasons, fmt.Sprintf("threshold %d exceeds the %d authorities the rule lists", threshold, len(auths)))
	}
	if len(sigs) == 0 {
		res.Reasons = append(res.Reasons, ErrNoSignatures.Error())
	}

	verified := make([]string, len(auths)) // key ID per authority that verified
	for i, sig := range sigs {
		if err := ctx.Err(); err != nil {
			res.Reasons = append(res.Reasons, fmt.Sprintf("stopped before sig %d of %d: %v", i, len(sigs), err))
			break
		}
		matched, err := v.matchKeys(sig, auths)
		if err == nil {
			_, err = checkPayload(sig.Payload, subject, req.SignedIdentity)
		}
		if err != nil {
			res.Reasons = append(res.Reasons, sigLabel(i, sig)+": "+err.Error())
			continue
		}
		for _, m := range matched {
			verified[m.index] = m.keyID
		}
	}

	seen := make(map[string]bool, len(auths))
	for i, a := range auths {
		id := verified[i]
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		res.By = append(res.By, Satisfier{Authority: authorityName(a, i), KeyID: id, Digest: subject.Digest})
	}
	res.Satisfied = threshold <= len(auths) && len(res.By) >= threshold
	if !res.Satisfied {
		res.Reasons = append(res.Reasons, fmt.Sprintf("%d of %d required authorities verified", len(res.By), threshold))
	}
	return res
}

type keyMatch struct {
	index int
	keyID string
}

// matchKeys returns the key authorities whose key verifies sig over its
// payload. With none, the error says which were tried and which could not
// be.
func (v *Verifier) matchKeys(sig artifact.Signature, auths []*policy.Authority) ([]keyMatch, error) {
	if len(sig.Signature) == 0 {
		return nil, errNoSignatureBytes
	}
	var matched []keyMatch
	var tried, keyless, unusable []string
	for i, a := range auths {
		name := authorityName(a, i)
		switch {
		case a == nil:
			unusable = append(unusable, name+": empty authority")
		case a.Keyless != nil:
			keyless = append(keyless, name)
		case a.Key == nil:
			unusable = append(unusable, name+": neither key nor keyless")
		default:
			k := v.keys.get(a.Key)
			if k.err != nil {
				unusable = append(unusable, name+": "+k.err.Error())
				continue
			}
			tried = append(tried, name)
			if k.verify(sig.Signature, sig.Payload) {
				matched = append(matched, keyMatch{index: i, keyID: k.id})
			}
		}
	}
	if len(matched) > 0 {
		return matched, nil
	}
	var parts []string
	kind := ErrUnsupported
	if len(tried) > 0 {
		kind = ErrBadSignature
		parts = append(parts, "not signed by any trusted key (tried "+strings.Join(tried, ", ")+")")
	}
	if len(keyless) > 0 {
		parts = append(parts, keylessReason+" ("+strings.Join(keyless, ", ")+")")
	}
	if len(unusable) > 0 {
		parts = append(parts, "unusable authorities: "+strings.Join(unusable, "; "))
	}
	return nil, reasonf(kind, strings.Join(parts, "; "))
}

func sigLabel(i int, sig artifact.Signature) string {
	if sig.Origin == "" {
		return fmt.Sprintf("sig %d", i)
	}
	return fmt.Sprintf("sig %d (%s)", i, sig.Origin)
}

func authorityName(a *policy.Authority, i int) string {
	if a == nil || a.Name == "" {
		return fmt.Sprintf("authority %d", i)
	}
	return a.Name
}
