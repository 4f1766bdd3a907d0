// Package verify is the only place in sealgate that checks signatures. It
// takes signature material exactly as a source found it (package artifact)
// and a rule's requirements (package policy), and says whether enough
// distinct trusted authorities signed the image, with one operator-readable
// reason for every signature that did not count.
//
// It verifies, entirely offline against the trust store (no Fulcio, Rekor,
// TUF or other network call):
//
//   - cosign's classic signatures (the `sha256-<digest>.sig` tag scheme,
//     simple-signing payloads), key-based or keyless: the certificate and
//     chain annotations and the Rekor bundle annotation are assembled into
//     a sigstore-go signed entity (entity.go), so that sigstore-go checks
//     them as it checks a v0.1 bundle;
//   - Sigstore bundles v0.1 to v0.3 (bundle.go), whose image signatures
//     are the DSSE in-toto statements `cosign sign --new-bundle-format`
//     writes (predicate type https://sigstore.dev/cosign/sign/v1, subject
//     the image digest);
//   - attestations (attest.go): in-toto statements in DSSE envelopes, from
//     cosign's `.att` tag or from bundles, of the exact predicate type a
//     rule asks for, naming the image digest, meeting the rule's
//     conditions;
//   - blobs against one bundle (blob.go), for `sealgate verify-bundle`.
//
// Keyless signatures are verified with sigstore-go (pkg/verify) against
// the trusted roots given to New, parsed once: the certificate must chain
// to a Fulcio CA of the root valid at the signing time, and the signing
// time comes only from a transparency-log entry whose signed entry
// timestamp verifies against a Rekor key of the root, or from a TSA
// timestamp of the root, never from the image or the node's clock; the
// certificate's SCT is checked when the root has CT logs; the log entry
// must be about this very signature, payload and certificate. Then the
// certificate's issuer, subject and Fulcio extensions are matched against
// the authority. Key authorities verify the signature with the key; their
// log entry is checked when the authority requires one (transparencyLog:
// required, or a rekorKey) or when one is present and its log is known. A
// key-signed bundle without log entry or timestamp (cosign
// --tlog-upload=false) is verified without a time, as sigstore-go intends
// for keys (WithNoObserverTimestamps).
//
// Every parser of untrusted input here is strict (duplicate and unknown
// keys refused) and bounded; signed content is parsed only to decide, and
// a payload or statement that does not parse never counts, even when its
// signature verifies.
//
// The package never logs; everything a caller needs is in the Result.
package verify

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/verdict"
)

// maxSignatures bounds the signatures (classic and bundles, or
// attestations) one call examines, so that a hostile registry listing
// thousands cannot hold a decision: the rest are skipped with a reason. It
// covers all that the registry source hands over (128 layers of a
// signature manifest and 64 bundle referrers), so that junk the source
// kept cannot push a valid signature out of what is examined.
const maxSignatures = 192

// Kinds of signature a Satisfier reports.
const (
	// KindCosignSignature is cosign's classic .sig layer.
	KindCosignSignature = "cosign-signature"
	// KindBundle is a Sigstore bundle (an image signature, or a blob).
	KindBundle = "bundle"
	// KindAttestation is an in-toto attestation (.att layer or bundle).
	KindAttestation = "attestation"
)

// Subject is the image a decision is about.
type Subject struct {
	// Repository is the normalised repository of the image being decided,
	// e.g. "127.0.0.1:5000/app" or "docker.io/library/nginx".
	Repository string
	// Digest is the "sha256:<hex>" manifest or index digest the signature
	// must cover.
	Digest string
	// Tag is the tag the image was named by ("" when by digest alone),
	// for signedIdentity matchExact.
	Tag string
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

// Satisfier records which authority vouched for which digest and when
// (package verdict holds the type, so that the verdict cache does not
// depend on this package).
type Satisfier = verdict.Satisfier

// Verifier checks signatures. It is safe for concurrent use and meant to
// live as long as its trust store: the trusted roots are parsed once, in
// New, and it keeps the verifier built for each key of each policy it has
// seen, for as long as that policy is in memory.
type Verifier struct {
	opts options
	mat  *material
	keys keyCache
}

// New builds a Verifier. Trusted roots (WithTrustedRootFiles) are read
// and parsed here, once; an unreadable or invalid root is an error naming
// the file. Without roots, key authorities work and keyless authorities
// fail with a reason.
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
	mat, err := loadRoots(v.opts)
	if err != nil {
		return nil, fmt.Errorf("new verifier: %w", err)
	}
	v.mat = mat
	return v, nil
}

// VerifySignature checks one classic signature against one authority:
// the signature (and, for keyless or when required, its certificate, log
// entry and identity) first, then the payload's digest and identity
// against subject. Errors wrap one of the package's sentinels, and their
// text is a reason an operator can act on.
func (v *Verifier) VerifySignature(subject Subject, sig artifact.Signature, a *policy.Authority, identity policy.SignedIdentity) (Satisfier, error) {
	if a == nil {
		return Satisfier{}, reasonf(ErrUnsupported, "no authority given")
	}
	name := authorityName(a, 0)
	s, err := classicSigned(sig)
	if err != nil {
		return Satisfier{}, err
	}
	sg, err := v.verifyWith(s, a, name)
	if err != nil {
		return Satisfier{}, named(err, name)
	}
	p, err := checkPayload(sig.Payload, subject, identity, nil)
	if err != nil {
		return Satisfier{}, err
	}
	return sg.satisfier(name, KindCosignSignature, p.Digest, ""), nil
}

var errNoSignatureBytes = reasonf(ErrBadSignature, "no signature bytes (the dev.cosignproject.cosign/signature annotation is missing or empty)")

// VerifySignatures checks an image's classic signatures against req; see
// VerifySignaturesAndBundles.
func (v *Verifier) VerifySignatures(ctx context.Context, subject Subject, sigs []artifact.Signature, req *policy.Signatures) Result {
	return v.VerifySignaturesAndBundles(ctx, subject, sigs, nil, req)
}

// VerifyBundleSignatures checks an image's Sigstore bundle signatures
// against req; see VerifySignaturesAndBundles.
func (v *Verifier) VerifyBundleSignatures(ctx context.Context, subject Subject, bundles []artifact.Bundle, req *policy.Signatures) Result {
	return v.VerifySignaturesAndBundles(ctx, subject, nil, bundles, req)
}

// VerifySignaturesAndBundles checks every signature of an image, classic
// (sigs) and in bundle form (the bundles whose statement is a cosign image
// signature; other bundles are attestations and are left to
// VerifyAttestations), against req, and counts the distinct authorities
// that verified across both kinds. Every signature is considered, so that
// a deny lists every reason at once; a signature that fails never stops
// the others. One signer counts once, so a threshold cannot be met by one
// key, or one certificate identity, named twice.
//
// When ctx is done the remaining signatures are skipped and a reason says
// so; the result then reflects only the signatures already checked.
func (v *Verifier) VerifySignaturesAndBundles(ctx context.Context, subject Subject, sigs []artifact.Signature, bundles []artifact.Bundle, req *policy.Signatures) Result {
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

	t := newTally(len(auths))
	found := 0
	stop := newStopper(ctx, len(sigs)+len(bundles), &res)
	for i, sig := range sigs {
		if stop.at("sig", i, len(sigs)) {
			break
		}
		found++
		label := sigLabel(i, sig)
		s, err := classicSigned(sig)
		var matched []match
		if err == nil {
			matched, err = v.evaluate(s, auths)
		}
		if err == nil {
			_, err = checkPayload(sig.Payload, subject, req.SignedIdentity, req.Remap)
		}
		if err != nil {
			res.Reasons = append(res.Reasons, label+": "+err.Error())
			continue
		}
		t.add(matched, KindCosignSignature, "", sig.Origin)
	}
	if !stop.halted {
		for i, b := range bundles {
			if stop.at("bundle", i, len(bundles)) {
				break
			}
			label := bundleLabel(i, b.Origin)
			pb, err := parseImageBundle(b)
			if err == nil && pb.statement != nil && pb.statement.PredicateType != CosignSignPredicateType {
				continue // an attestation, for VerifyAttestations
			}
			found++
			var matched []match
			if err == nil {
				err = checkStatementSubject(pb.statement, subject.Digest)
			}
			if err == nil {
				s := bundleSigned(pb)
				s.artifact = digestArtifact(subject.Digest)
				matched, err = v.evaluate(s, auths)
			}
			if err != nil {
				res.Reasons = append(res.Reasons, label+": "+err.Error())
				continue
			}
			t.add(matched, KindBundle, CosignSignPredicateType, b.Origin)
		}
	}
	if found == 0 && !stop.halted {
		res.Reasons = append(res.Reasons, ErrNoSignatures.Error())
	}
	res.By = t.satisfiers(auths, subject.Digest)
	res.Satisfied = threshold <= len(auths) && len(res.By) >= threshold
	if !res.Satisfied {
		res.Reasons = append(res.Reasons, fmt.Sprintf("%d of %d required authorities verified", len(res.By), threshold))
	}
	return res
}

// stopper ends a loop over signatures when ctx is done or maxSignatures
// have been examined, with one reason saying so.
type stopper struct {
	ctx      context.Context
	total    int
	examined int
	halted   bool
	res      *Result
}

func newStopper(ctx context.Context, total int, res *Result) *stopper {
	return &stopper{ctx: ctx, total: total, res: res}
}

// at reports whether to stop before item i of n of the named kind.
func (s *stopper) at(what string, i, n int) bool {
	if s.halted {
		return true
	}
	if err := s.ctx.Err(); err != nil {
		s.res.Reasons = append(s.res.Reasons, fmt.Sprintf("stopped before %s %d of %d: %v", what, i, n, err))
		s.halted = true
		return true
	}
	if s.examined == maxSignatures {
		s.res.Reasons = append(s.res.Reasons, fmt.Sprintf("%d more signatures not checked (at most %d are examined per decision)", s.total-s.examined, maxSignatures))
		s.halted = true
		return true
	}
	s.examined++
	return false
}

// parseImageBundle parses a bundle attached to an image. A message
// signature cannot say which image it is for, so only DSSE statements
// vouch for images.
func parseImageBundle(b artifact.Bundle) (*parsedBundle, error) {
	if err := checkBundleMediaType(b.MediaType); err != nil {
		return nil, err
	}
	pb, err := parseBundle(b.JSON)
	if err != nil {
		return nil, err
	}
	if pb.statement == nil {
		return nil, reasonf(ErrBundle, "a message-signature bundle names no image; cosign signs images with an in-toto statement ("+CosignSignPredicateType+")")
	}
	return pb, nil
}

// checkStatementSubject requires a statement to name digest.
func checkStatementSubject(st *Statement, digest string) error {
	if st.Names(digest) {
		return nil
	}
	return reasonf(ErrDigestMismatch, fmt.Sprintf("the statement's subject is %s, not %s (made for another artifact?)", st.subjectDigests(), truncate(digest, 80)))
}

// digestArtifact binds a DSSE statement to digest for sigstore-go, which
// then checks the statement's subject too.
func digestArtifact(digest string) func() verify.ArtifactPolicyOption {
	alg, h, _ := splitDigest(digest)
	raw, _ := hex.DecodeString(h)
	return func() verify.ArtifactPolicyOption { return verify.WithArtifactDigest(alg, raw) }
}

// classicSigned prepares a classic signature: the message signature over
// its payload, the certificate and chain, the Rekor bundle as a log entry
// with its inclusion promise, and the TSA timestamp over the signature.
func classicSigned(sig artifact.Signature) (*signed, error) {
	if len(sig.Signature) == 0 {
		return nil, errNoSignatureBytes
	}
	s := &signed{sig: sig.Signature, payload: sig.Payload}
	ent := &entity{}
	ent.entries, s.annotationErr = annotationEntries(sig.RekorBundle)
	if len(sig.Timestamp) > 0 {
		ts, err := parseTimestamp(sig.Timestamp)
		switch {
		case err != nil && s.annotationErr == nil:
			s.annotationErr = reasonf(ErrTimestamp, "invalid timestamp annotation (dev.sigstore.cosign/rfc3161timestamp): "+err.Error())
		case err == nil:
			ent.timestamps = [][]byte{ts}
		}
	}
	h := entryHash(ent.entries)
	ent.content = bundle.NewMessageSignature(hashOf(h, sig.Payload), hashName(h), sig.Signature)
	s.certErr = attachCertificate(ent, sig.Certificate, sig.Chain)
	s.cert = ent.vc != nil
	s.entity, s.classic = ent, ent
	s.entries, s.stamps = ent.entries, len(ent.timestamps)
	payload := sig.Payload
	s.artifact = func() verify.ArtifactPolicyOption { return verify.WithArtifact(bytes.NewReader(payload)) }
	return s, nil
}

// annotationEntries reads a Rekor bundle annotation, when there is one.
// An annotation that does not parse is kept as an error for the
// authorities that need a log entry or a verified time (keyless, or a log
// required); a key authority with the log optional does not look at it.
func annotationEntries(rekorBundle []byte) ([]*tlog.Entry, error) {
	if len(rekorBundle) == 0 {
		return nil, nil
	}
	e, err := parseRekorBundle(rekorBundle)
	if err != nil {
		return nil, reasonf(ErrTransparencyLog, "invalid Rekor bundle annotation (dev.sigstore.cosign/bundle): "+err.Error())
	}
	return []*tlog.Entry{e}, nil
}

// attachCertificate parses the certificate and chain annotations into e.
func attachCertificate(e *entity, certPEM, chainPEM []byte) error {
	if len(certPEM) == 0 {
		if len(chainPEM) > 0 {
			return errors.New("a chain annotation without a certificate annotation")
		}
		return nil
	}
	leaf, err := parseCertificate(certPEM)
	if err != nil {
		return err
	}
	inter, err := parseChain(chainPEM)
	if err != nil {
		return err
	}
	e.vc = &certContent{leaf: leaf, intermediates: inter}
	return nil
}

// match is one authority a signature verified for.
type match struct {
	index int
	who   signer
}

// keyMismatch is a key authority whose key does not verify a classic
// signature; several are reported as one "tried" list.
type keyMismatch struct{ name string }

func (e *keyMismatch) Error() string { return "not signed by " + e.name }
func (e *keyMismatch) Unwrap() error { return ErrBadSignature }

// evaluate checks s against every authority and returns those it verified
// for. With none, the error combines why, per authority: the keys tried,
// the other failures (authorities failing alike grouped), and the
// authorities that cannot be used.
func (v *Verifier) evaluate(s *signed, auths []*policy.Authority) ([]match, error) {
	var matched []match
	var tried, unusable []string
	var groups []string
	byMsg := map[string][]string{}
	var kind error
	for i, a := range auths {
		name := authorityName(a, i)
		who, err := v.verifyWith(s, a, name)
		if err == nil {
			matched = append(matched, match{index: i, who: who})
			continue
		}
		var km *keyMismatch
		switch {
		case errors.As(err, &km):
			tried = append(tried, name)
		case errors.Is(err, ErrUnsupported):
			unusable = append(unusable, name+": "+err.Error())
		default:
			msg := err.Error()
			if _, ok := byMsg[msg]; !ok {
				groups = append(groups, msg)
				if kind == nil {
					kind = kindOf(err)
				}
			}
			byMsg[msg] = append(byMsg[msg], name)
		}
	}
	if len(matched) > 0 {
		return matched, nil
	}
	var parts []string
	if len(tried) > 0 {
		kind = ErrBadSignature
		parts = append(parts, "not signed by any trusted key (tried "+strings.Join(tried, ", ")+")")
	}
	for _, msg := range groups {
		parts = append(parts, strings.Join(byMsg[msg], ", ")+": "+msg)
	}
	if len(unusable) > 0 {
		parts = append(parts, "unusable authorities: "+strings.Join(unusable, "; "))
	}
	if kind == nil {
		kind = ErrUnsupported
	}
	return nil, reasonf(kind, strings.Join(parts, "; "))
}

// named prefixes err's message with the authority's name, keeping its
// class, for single-authority calls.
func named(err error, name string) error {
	var km *keyMismatch
	if errors.As(err, &km) || err == errNoSignatureBytes {
		return err
	}
	return reasonf(kindOf(err), name+": "+err.Error())
}

// tally collects, per authority, the signers that verified, and assigns
// each authority a signer no other authority counted.
type tally struct {
	cands [][]candidate
}

type candidate struct {
	who           signer
	kind          string
	predicateType string
	origin        string
}

func newTally(n int) *tally { return &tally{cands: make([][]candidate, n)} }

func (t *tally) add(ms []match, kind, predicateType, origin string) {
	for _, m := range ms {
		t.cands[m.index] = append(t.cands[m.index], candidate{who: m.who, kind: kind, predicateType: predicateType, origin: origin})
	}
}

// satisfiers returns one Satisfier per authority that verified, in
// authority order, each with a signer not already counted for an earlier
// authority.
func (t *tally) satisfiers(auths []*policy.Authority, digest string) []Satisfier {
	var out []Satisfier
	used := map[string]bool{}
	for i, cs := range t.cands {
		for _, c := range cs {
			if used[c.who.id] {
				continue
			}
			used[c.who.id] = true
			sat := c.who.satisfier(authorityName(auths[i], i), c.kind, digest, c.predicateType)
			sat.Origin = c.origin
			out = append(out, sat)
			break
		}
	}
	return out
}

func (s signer) satisfier(authority, kind, digest, predicateType string) Satisfier {
	return Satisfier{
		Authority:     authority,
		KeyID:         s.keyID,
		Issuer:        s.issuer,
		Subject:       s.subject,
		SignedAt:      s.signedAt,
		ValidUntil:    s.validUntil,
		Kind:          kind,
		PredicateType: predicateType,
		Digest:        digest,
	}
}

func sigLabel(i int, sig artifact.Signature) string {
	if sig.Origin == "" {
		return fmt.Sprintf("sig %d", i)
	}
	return fmt.Sprintf("sig %d (%s)", i, sig.Origin)
}

func bundleLabel(i int, origin string) string {
	if origin == "" {
		return fmt.Sprintf("bundle %d", i)
	}
	return fmt.Sprintf("bundle %d (%s)", i, origin)
}

func authorityName(a *policy.Authority, i int) string {
	if a == nil || a.Name == "" {
		return fmt.Sprintf("authority %d", i)
	}
	return a.Name
}
