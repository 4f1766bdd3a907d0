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
	// payload under the authority's key: another signer, or tampering.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrDigestMismatch means a genuine signature covers another manifest,
	// typically one copied from a sibling image.
	ErrDigestMismatch = errors.New("payload digest does not match the image")
	// ErrReferenceMismatch means a genuine signature names another
	// repository than the one being decided (signatures.signedIdentity).
	ErrReferenceMismatch = errors.New("payload reference does not match the image repository")
	// ErrPayload means the signed payload is not a well-formed
	// simple-signing document.
	ErrPayload = errors.New("invalid signature payload")
	// ErrUnsupported means the authority or key cannot be checked by this
	// build (keyless authorities, unknown key types); it is never a pass.
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
