package verify

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// Bounds on cosign's classic annotations (a Fulcio certificate is about
// 1.5 KiB, a chain two of them, a Rekor bundle a few KiB).
const (
	maxCertificatePEM = 64 << 10
	maxChainCerts     = 8
	maxAnnotationJSON = MaxPayloadSize
)

// entity is a sigstore-go verify.SignedEntity assembled from cosign's
// classic scheme: a signature over a simple-signing payload (or a DSSE
// envelope, for the .att tag) with its certificate, chain, Rekor bundle and
// TSA annotations. sigstore-go then verifies it exactly as it verifies a
// bundle, the Rekor bundle annotation taking the place of a v0.1 bundle's
// transparency-log entry with its inclusion promise (signed entry
// timestamp).
type entity struct {
	content    verify.SignatureContent
	vc         verify.VerificationContent // nil: no certificate (key-signed)
	entries    []*tlog.Entry
	timestamps [][]byte
}

var _ verify.SignedEntity = (*entity)(nil)

func (e *entity) HasInclusionPromise() bool {
	for _, en := range e.entries {
		if en.HasInclusionPromise() {
			return true
		}
	}
	return false
}

func (e *entity) HasInclusionProof() bool {
	for _, en := range e.entries {
		if en.HasInclusionProof() {
			return true
		}
	}
	return false
}

func (e *entity) SignatureContent() (verify.SignatureContent, error) { return e.content, nil }
func (e *entity) Timestamps() ([][]byte, error)                      { return e.timestamps, nil }
func (e *entity) TlogEntries() ([]*tlog.Entry, error)                { return e.entries, nil }

// Version is the bundle version whose verification rules apply: v0.1, the
// bundle form of cosign's classic annotations (inclusion promise, leaf
// certificate with an optional chain).
func (e *entity) Version() (string, error) { return "v0.1", nil }

func (e *entity) VerificationContent() (verify.VerificationContent, error) {
	if e.vc == nil {
		return nil, errors.New("no certificate")
	}
	return e.vc, nil
}

// withKey returns a copy of e verified with pub instead of a certificate.
func (e *entity) withKey(id string, pub crypto.PublicKey) *entity {
	c := *e
	c.vc = &keyContent{id: id, pub: pub}
	return &c
}

// certContent is a leaf certificate with the chain cosign attached. The
// chain only helps path building: the anchor is always a Fulcio CA of the
// trusted root.
type certContent struct {
	leaf          *x509.Certificate
	intermediates []*x509.Certificate
}

var _ verify.VerificationContent = (*certContent)(nil)

func (c *certContent) CompareKey(k any, _ root.TrustedMaterial) bool {
	cert, ok := k.(*x509.Certificate)
	return ok && c.leaf.Equal(cert)
}

func (c *certContent) ValidAtTime(t time.Time, _ root.TrustedMaterial) bool {
	return !c.leaf.NotAfter.Before(t) && !c.leaf.NotBefore.After(t)
}

func (c *certContent) Certificate() *x509.Certificate      { return c.leaf }
func (c *certContent) Intermediates() []*x509.Certificate  { return c.intermediates }
func (c *certContent) PublicKey() verify.PublicKeyProvider { return nil }

// keyContent is an authority's public key, for classic key signatures
// whose Rekor entry must name that key.
type keyContent struct {
	id  string
	pub crypto.PublicKey
}

var _ verify.VerificationContent = (*keyContent)(nil)

func (k *keyContent) CompareKey(x any, _ root.TrustedMaterial) bool {
	eq, ok := x.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(k.pub)
}

func (k *keyContent) ValidAtTime(time.Time, root.TrustedMaterial) bool { return true }
func (k *keyContent) Certificate() *x509.Certificate                   { return nil }
func (k *keyContent) Intermediates() []*x509.Certificate               { return nil }
func (k *keyContent) PublicKey() verify.PublicKeyProvider              { return k }
func (k *keyContent) Hint() string                                     { return k.id }

// parseCertificate reads the certificate annotation: exactly one PEM
// CERTIFICATE.
func parseCertificate(b []byte) (*x509.Certificate, error) {
	certs, err := parsePEMCertificates(b, 1)
	if err != nil {
		return nil, fmt.Errorf("certificate annotation: %w", err)
	}
	if len(certs) != 1 {
		return nil, errors.New("certificate annotation: no certificate")
	}
	return certs[0], nil
}

// parseChain reads the chain annotation (intermediates, then the root).
func parseChain(b []byte) ([]*x509.Certificate, error) {
	certs, err := parsePEMCertificates(b, maxChainCerts)
	if err != nil {
		return nil, fmt.Errorf("chain annotation: %w", err)
	}
	return certs, nil
}

func parsePEMCertificates(b []byte, max int) ([]*x509.Certificate, error) {
	if len(b) > maxCertificatePEM {
		return nil, fmt.Errorf("%d bytes exceeds the %d byte limit", len(b), maxCertificatePEM)
	}
	var certs []*x509.Certificate
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q is not a CERTIFICATE", truncate(block.Type, 40))
		}
		if len(certs) == max {
			return nil, fmt.Errorf("more than %d certificates", max)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(trimSpace(rest)) != 0 {
		return nil, errors.New("data that is not PEM")
	}
	return certs, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// parseRekorBundle reads cosign's dev.sigstore.cosign/bundle annotation,
// {"SignedEntryTimestamp": b64, "Payload": {"body": b64, "integratedTime",
// "logIndex", "logID": hex}}, strictly, into a Rekor v1 entry with its
// inclusion promise. Nothing in it is trusted until sigstore-go has checked
// the promise against a Rekor key of the trust store and the entry against
// the signature.
func parseRekorBundle(b []byte) (*tlog.Entry, error) {
	if len(b) > maxAnnotationJSON {
		return nil, fmt.Errorf("%d bytes exceeds the %d byte limit", len(b), maxAnnotationJSON)
	}
	doc, err := decodeStrict(b, 8, false)
	if err != nil {
		return nil, err
	}
	top, err := object(doc, "Rekor bundle", "SignedEntryTimestamp", "Payload")
	if err != nil {
		return nil, err
	}
	set, err := requiredBase64(top, "SignedEntryTimestamp", "SignedEntryTimestamp")
	if err != nil {
		return nil, err
	}
	p, err := requiredObject(top, "Payload", "Payload", "body", "integratedTime", "logIndex", "logID")
	if err != nil {
		return nil, err
	}
	body, err := requiredBase64(p, "body", "Payload.body")
	if err != nil {
		return nil, err
	}
	integrated, err := requiredInt(p, "integratedTime", "Payload.integratedTime")
	if err != nil {
		return nil, err
	}
	index, err := requiredInt(p, "logIndex", "Payload.logIndex")
	if err != nil {
		return nil, err
	}
	logIDHex, err := requiredString(p, "logID", "Payload.logID")
	if err != nil {
		return nil, err
	}
	logID, err := hex.DecodeString(logIDHex)
	if err != nil || len(logID) == 0 {
		return nil, fmt.Errorf("Payload.logID %q is not hex", truncate(logIDHex, 80))
	}
	// NewEntry parses a Rekor v1 entry body, which is what cosign's
	// annotation holds (its bundle form is a v0.1 bundle's tlog entry).
	entry, err := tlog.NewEntry(body, integrated, index, logID, set, nil) //nolint:staticcheck // Rekor v1 body by design
	if err != nil {
		return nil, fmt.Errorf("Payload.body: %v", err)
	}
	return entry, nil
}

// parseTimestamp reads cosign's dev.sigstore.cosign/rfc3161timestamp
// annotation, {"SignedRFC3161Timestamp": b64 DER}.
func parseTimestamp(b []byte) ([]byte, error) {
	if len(b) > maxAnnotationJSON {
		return nil, fmt.Errorf("%d bytes exceeds the %d byte limit", len(b), maxAnnotationJSON)
	}
	doc, err := decodeStrict(b, 4, false)
	if err != nil {
		return nil, err
	}
	top, err := object(doc, "timestamp", "SignedRFC3161Timestamp")
	if err != nil {
		return nil, err
	}
	return requiredBase64(top, "SignedRFC3161Timestamp", "SignedRFC3161Timestamp")
}

func requiredBase64(m map[string]any, key, what string) ([]byte, error) {
	s, err := requiredString(m, key, what)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%s is not base64", what)
	}
	return b, nil
}

func requiredInt(m map[string]any, key, what string) (int64, error) {
	v, ok := m[key]
	if !ok {
		return 0, fmt.Errorf("%s is missing", what)
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s is not a number", what)
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || i < 0 {
		return 0, fmt.Errorf("%s is not a non-negative integer", what)
	}
	return i, nil
}

// hashOf digests b with h, for a message signature's digest.
func hashOf(h crypto.Hash, b []byte) []byte {
	w := h.New()
	w.Write(b)
	return w.Sum(nil)
}

// hashName is h as sigstore-go names message digest algorithms.
func hashName(h crypto.Hash) string {
	switch h {
	case crypto.SHA384:
		return "SHA2_384"
	case crypto.SHA512:
		return "SHA2_512"
	}
	return "SHA2_256"
}

// entryHash is the hash function of a hashedrekord entry's digest, so that
// the message signature's digest is computed the way the log recorded it;
// SHA-256 for anything else.
func entryHash(entries []*tlog.Entry) crypto.Hash {
	for _, e := range entries {
		if _, alg, ok := e.GetHashedRekordDigest(); ok {
			switch alg {
			case "sha384":
				return crypto.SHA384
			case "sha512":
				return crypto.SHA512
			}
		}
	}
	return crypto.SHA256
}

// envelopeContent wraps a DSSE envelope as sigstore-go signature content.
func envelopeContent(env *dsse.Envelope) verify.SignatureContent {
	return &bundle.Envelope{Envelope: env}
}
