package verify

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// Bounds on attestations. An in-toto statement with a large predicate (an
// SBOM) can reach a few hundred KiB; anything past these is refused before
// it is parsed.
const (
	// MaxStatementSize bounds a DSSE envelope and the statement it holds.
	MaxStatementSize = MaxBundleSize
	// maxStatementDepth bounds JSON nesting in a statement (predicates such
	// as dependency trees nest deeper than signature payloads).
	maxStatementDepth = 64
	// maxStatementSubjects bounds the subjects of a statement (sigstore-go
	// allows 1024).
	maxStatementSubjects = 1024
	// maxSubjectDigests bounds the digests of one subject (sigstore-go
	// allows 32).
	maxSubjectDigests = 32
	// maxEnvelopeSignatures bounds the signatures of a DSSE envelope;
	// sigstore-go then accepts exactly one.
	maxEnvelopeSignatures = 8
)

// In-toto statement and DSSE types.
const (
	// InTotoPayloadType is the DSSE payload type of in-toto statements.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// StatementTypeV1 and StatementTypeV01 are the statement `_type`s
	// accepted; cosign v2 `attest` writes v0.1.
	StatementTypeV1  = "https://in-toto.io/Statement/v1"
	StatementTypeV01 = "https://in-toto.io/Statement/v0.1"
	// CosignSignPredicateType is the predicate type of the statement that
	// `cosign sign --new-bundle-format` signs: an image signature whose
	// subject is the image digest, with no predicate.
	CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"
)

// Statement is a parsed in-toto statement. Only a statement whose envelope
// signature verified may be used for decisions.
type Statement struct {
	// Type is `_type`: StatementTypeV1 or StatementTypeV01.
	Type string
	// PredicateType is `predicateType`, compared exactly.
	PredicateType string
	// Subjects are the statement's subjects.
	Subjects []StatementSubject
	// JSON is the whole statement as encoding/json would decode it
	// (objects map[string]any, arrays []any, numbers float64), the form
	// policy conditions evaluate.
	JSON map[string]any
}

// StatementSubject is one subject: a name and its digests (algorithm to
// lower-case hex, as in-toto writes them).
type StatementSubject struct {
	Name   string
	Digest map[string]string
}

// resourceDescriptorKeys are the members of an in-toto ResourceDescriptor.
var resourceDescriptorKeys = []string{"name", "uri", "digest", "content", "downloadLocation", "mediaType", "annotations"}

// ParseStatement parses an in-toto statement strictly: at most
// MaxStatementSize bytes of UTF-8 JSON, one object, no duplicate keys at any
// depth, no unknown top-level or subject keys, `_type` an in-toto statement
// type, a non-empty `predicateType`, between 1 and 1024 subjects with at
// most 32 digests each. Errors wrap ErrPayload. A lax parser could read
// another subject or type than the signer's tools did, so anything
// ambiguous is refused.
func ParseStatement(b []byte) (*Statement, error) {
	if len(b) == 0 {
		return nil, statementErr("empty")
	}
	if len(b) > MaxStatementSize {
		return nil, statementErr(fmt.Sprintf("%d bytes exceeds the %d byte limit", len(b), MaxStatementSize))
	}
	doc, err := decodeStrict(b, maxStatementDepth, true)
	if err != nil {
		return nil, statementErr(err.Error())
	}
	top, err := object(doc, "statement", "_type", "subject", "predicateType", "predicate")
	if err != nil {
		return nil, statementErr(err.Error())
	}
	st := &Statement{JSON: top}
	if st.Type, err = requiredString(top, "_type", "_type"); err != nil {
		return nil, statementErr(err.Error())
	}
	if st.Type != StatementTypeV1 && st.Type != StatementTypeV01 {
		return nil, statementErr(fmt.Sprintf("_type %q is not an in-toto statement type (%s)", truncate(st.Type, 80), StatementTypeV1))
	}
	if st.PredicateType, err = requiredString(top, "predicateType", "predicateType"); err != nil {
		return nil, statementErr(err.Error())
	}
	if st.PredicateType == "" {
		return nil, statementErr("predicateType is empty")
	}
	raw, ok := top["subject"]
	if !ok {
		return nil, statementErr("subject is missing")
	}
	subjects, ok := raw.([]any)
	if !ok {
		return nil, statementErr("subject is not a JSON array")
	}
	if len(subjects) == 0 {
		return nil, statementErr("subject is empty")
	}
	if len(subjects) > maxStatementSubjects {
		return nil, statementErr(fmt.Sprintf("%d subjects exceeds the limit of %d", len(subjects), maxStatementSubjects))
	}
	st.Subjects = make([]StatementSubject, 0, len(subjects))
	for i, s := range subjects {
		what := fmt.Sprintf("subject[%d]", i)
		m, err := object(s, what, resourceDescriptorKeys...)
		if err != nil {
			return nil, statementErr(err.Error())
		}
		sub := StatementSubject{}
		if v, ok := m["name"]; ok {
			if sub.Name, ok = v.(string); !ok {
				return nil, statementErr(what + ".name is not a string")
			}
		}
		dv, ok := m["digest"]
		if !ok {
			return nil, statementErr(what + ".digest is missing")
		}
		dm, ok := dv.(map[string]any)
		if !ok {
			return nil, statementErr(what + ".digest is not a JSON object")
		}
		if len(dm) > maxSubjectDigests {
			return nil, statementErr(fmt.Sprintf("%s.digest has %d entries, more than %d", what, len(dm), maxSubjectDigests))
		}
		sub.Digest = make(map[string]string, len(dm))
		for alg, h := range dm {
			hs, ok := h.(string)
			if !ok {
				return nil, statementErr(fmt.Sprintf("%s.digest.%s is not a string", what, truncate(alg, 40)))
			}
			sub.Digest[alg] = hs
		}
		st.Subjects = append(st.Subjects, sub)
	}
	return st, nil
}

// Names reports whether some subject's digest equals digest
// ("<algorithm>:<hex>"), comparing the hex exactly.
func (s *Statement) Names(digest string) bool {
	alg, hexDigest, ok := splitDigest(digest)
	if !ok {
		return false
	}
	for _, sub := range s.Subjects {
		if h, ok := sub.Digest[alg]; ok && h == hexDigest {
			return true
		}
	}
	return false
}

// subjectDigests lists the statement's subject digests for messages, at
// most a few.
func (s *Statement) subjectDigests() string {
	const shown = 3
	var out []string
	for _, sub := range s.Subjects {
		for alg, h := range sub.Digest {
			if len(out) == shown {
				return fmt.Sprintf("%s and more", strings.Join(out, ", "))
			}
			out = append(out, alg+":"+truncate(h, 128))
		}
	}
	if len(out) == 0 {
		return "no digest"
	}
	return strings.Join(out, ", ")
}

func splitDigest(d string) (alg, hexDigest string, ok bool) {
	if !ValidDigest(d) {
		return "", "", false
	}
	for i := 0; i < len(d); i++ {
		if d[i] == ':' {
			return d[:i], d[i+1:], true
		}
	}
	return "", "", false
}

func statementErr(msg string) error {
	return reasonf(ErrPayload, "invalid in-toto statement: "+msg)
}

func envelopeErr(msg string) error {
	return reasonf(ErrPayload, "invalid DSSE envelope: "+msg)
}

// ParseEnvelope parses a DSSE envelope strictly (cosign's .att layer):
// at most MaxStatementSize bytes, no duplicate or unknown keys,
// `payloadType`, a base64 `payload`, and 1 to 8 signatures, each with a
// base64 `sig` and an optional `keyid`. Errors wrap ErrPayload. The
// signatures are not verified here.
func ParseEnvelope(b []byte) (*dsse.Envelope, error) {
	if len(b) == 0 {
		return nil, envelopeErr("empty")
	}
	if len(b) > MaxStatementSize {
		return nil, envelopeErr(fmt.Sprintf("%d bytes exceeds the %d byte limit", len(b), MaxStatementSize))
	}
	doc, err := decodeStrict(b, 8, false)
	if err != nil {
		return nil, envelopeErr(err.Error())
	}
	top, err := object(doc, "envelope", "payloadType", "payload", "signatures")
	if err != nil {
		return nil, envelopeErr(err.Error())
	}
	env := &dsse.Envelope{}
	if env.PayloadType, err = requiredString(top, "payloadType", "payloadType"); err != nil {
		return nil, envelopeErr(err.Error())
	}
	if env.Payload, err = requiredString(top, "payload", "payload"); err != nil {
		return nil, envelopeErr(err.Error())
	}
	if _, err := base64.StdEncoding.DecodeString(env.Payload); err != nil {
		return nil, envelopeErr("payload is not base64")
	}
	raw, ok := top["signatures"]
	if !ok {
		return nil, envelopeErr("signatures is missing")
	}
	sigs, ok := raw.([]any)
	if !ok {
		return nil, envelopeErr("signatures is not a JSON array")
	}
	if len(sigs) == 0 || len(sigs) > maxEnvelopeSignatures {
		return nil, envelopeErr(fmt.Sprintf("%d signatures; want 1 to %d", len(sigs), maxEnvelopeSignatures))
	}
	for i, s := range sigs {
		what := fmt.Sprintf("signatures[%d]", i)
		m, err := object(s, what, "keyid", "sig")
		if err != nil {
			return nil, envelopeErr(err.Error())
		}
		var sig dsse.Signature
		if v, ok := m["keyid"]; ok {
			if sig.KeyID, ok = v.(string); !ok {
				return nil, envelopeErr(what + ".keyid is not a string")
			}
		}
		if sig.Sig, err = requiredString(m, "sig", what+".sig"); err != nil {
			return nil, envelopeErr(err.Error())
		}
		if b, err := base64.StdEncoding.DecodeString(sig.Sig); err != nil || len(b) == 0 {
			return nil, envelopeErr(what + ".sig is not base64")
		}
		env.Signatures = append(env.Signatures, sig)
	}
	return env, nil
}

// envelopeStatement decodes and parses the statement an envelope carries.
func envelopeStatement(env *dsse.Envelope) (*Statement, error) {
	if env.PayloadType != InTotoPayloadType {
		return nil, reasonf(ErrPayload, fmt.Sprintf("DSSE payload type %q is not %s", truncate(env.PayloadType, 80), InTotoPayloadType))
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, envelopeErr("payload is not base64")
	}
	return ParseStatement(payload)
}
