package verify

import "errors"

// Sentinels for what callers branch on. Every error this package returns
// wraps exactly one of them, so errors.Is tells a caller which class of
// failure a signature hit without parsing the message.
var (
	// ErrNoSignatures means the image carries no signature at all: the
	// operator has to sign it (or the source found nothing), not fix a key.
	ErrNoSignatures = errors.New("no signatures found")
	// ErrBadSignature means the signature bytes do not verify over the
	// payload under the authority's key or certificate: another signer, or
	// tampering.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrDigestMismatch means a genuine signature or statement covers
	// another manifest, typically one copied from a sibling image.
	ErrDigestMismatch = errors.New("payload digest does not match the image")
	// ErrReferenceMismatch means a genuine signature names another
	// repository than the one being decided (signatures.signedIdentity).
	ErrReferenceMismatch = errors.New("payload reference does not match the image repository")
	// ErrPayload means the signed content is not a well-formed
	// simple-signing document, DSSE envelope or in-toto statement. Such a
	// signature never counts, even when its signature bytes verify.
	ErrPayload = errors.New("invalid signature payload")
	// ErrBundle means a Sigstore bundle is malformed, too large or of a
	// kind that cannot vouch for what is being verified.
	ErrBundle = errors.New("invalid Sigstore bundle")
	// ErrCertificate means a keyless signature's certificate does not
	// chain to a Fulcio CA of the trusted root at the signing time, lacks
	// the SCT the root's CT logs call for, or is missing.
	ErrCertificate = errors.New("certificate not trusted")
	// ErrIdentityMismatch means a trusted certificate names another
	// identity (issuer, subject or Fulcio extension) than the authority.
	ErrIdentityMismatch = errors.New("certificate identity does not match")
	// ErrTransparencyLog means a required transparency-log entry is
	// missing, or a log entry does not verify against the trust store's
	// Rekor keys, or is about another signature.
	ErrTransparencyLog = errors.New("transparency log entry not verified")
	// ErrTimestamp means no trusted signing time could be established for
	// a certificate: no verified log entry and no verified TSA timestamp.
	ErrTimestamp = errors.New("no verified signing time")
	// ErrPredicateType means an attestation is of another predicate type
	// than the rule asks for.
	ErrPredicateType = errors.New("attestation predicate type does not match")
	// ErrConditionNotMet means a verified attestation's statement fails
	// one of the rule's conditions, or a condition could not be evaluated.
	ErrConditionNotMet = errors.New("attestation condition not met")
	// ErrUnsupported means the authority or key cannot be checked by this
	// build (unknown key types, no trusted root for a keyless authority);
	// it is never a pass.
	ErrUnsupported = errors.New("unsupported")
)

// reasonError carries an operator-readable message while unwrapping to the
// sentinel that classifies it, so the message does not repeat the sentinel's
// text.
type reasonError struct {
	kind error
	msg  string
}

func (e *reasonError) Error() string { return e.msg }
func (e *reasonError) Unwrap() error { return e.kind }

func reasonf(kind error, msg string) error {
	return &reasonError{kind: kind, msg: msg}
}

// kindOf returns the sentinel err wraps, ErrBadSignature when none.
func kindOf(err error) error {
	var re *reasonError
	if errors.As(err, &re) {
		return re.kind
	}
	return ErrBadSignature
}
