package verify

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/sealgate/sealgate/internal/strictjson"
)

// MaxPayloadSize bounds a simple-signing payload. cosign's payloads are a
// few hundred bytes; anything near this limit is not a signature payload.
const MaxPayloadSize = 256 << 10

// maxPayloadDepth bounds JSON nesting so a hostile payload cannot exhaust
// the stack of the recursive reader.
const maxPayloadDepth = 32

// Payload types accepted in critical.type.
const (
	// CosignSignatureType is what cosign writes.
	CosignSignatureType = "cosign container image signature"
	// AtomicSignatureType is what containers/image (podman, skopeo) writes.
	AtomicSignatureType = "atomic container signature"
)

// Payload is a parsed simple-signing document, the statement a classic
// cosign signature signs. Only a payload whose signature verified may be
// used for decisions.
type Payload struct {
	// Type is critical.type: CosignSignatureType or AtomicSignatureType.
	Type string
	// DockerReference is critical.identity.docker-reference, the image the
	// signer meant; it may be empty (older cosign, or an identity-less
	// signer), which only signedIdentity "any" accepts.
	DockerReference string
	// Digest is critical.image.docker-manifest-digest, a validated
	// "sha256:<64 hex>" or "sha512:<128 hex>".
	Digest string
	// Optional is the `optional` member as decoded JSON (objects are
	// map[string]any, numbers json.Number); nil when absent or null.
	Optional any
}

// ParsePayload parses a simple-signing payload strictly: one JSON object of
// at most MaxPayloadSize bytes, valid UTF-8, no duplicate keys at any depth,
// no unknown keys outside `optional`, keys matched case-sensitively. A lax
// parser could read a different document than the signer's tools did, so
// anything ambiguous is an error wrapping ErrPayload.
func ParsePayload(b []byte) (*Payload, error) {
	if len(b) == 0 {
		return nil, payloadErr("empty")
	}
	if len(b) > MaxPayloadSize {
		return nil, payloadErr(fmt.Sprintf("%d bytes exceeds the %d byte limit", len(b), MaxPayloadSize))
	}
	doc, err := decodeStrict(b, maxPayloadDepth, false)
	if err != nil {
		return nil, payloadErr(err.Error())
	}

	top, err := object(doc, "document", "critical", "optional")
	if err != nil {
		return nil, payloadErr(err.Error())
	}
	p := &Payload{Optional: top["optional"]}
	critical, err := requiredObject(top, "critical", "critical", "type", "image", "identity")
	if err != nil {
		return nil, payloadErr(err.Error())
	}
	if p.Type, err = requiredString(critical, "type", "critical.type"); err != nil {
		return nil, payloadErr(err.Error())
	}
	if p.Type != CosignSignatureType && p.Type != AtomicSignatureType {
		return nil, payloadErr(fmt.Sprintf("critical.type %q is not %q", p.Type, CosignSignatureType))
	}
	image, err := requiredObject(critical, "image", "critical.image", "docker-manifest-digest")
	if err != nil {
		return nil, payloadErr(err.Error())
	}
	if p.Digest, err = requiredString(image, "docker-manifest-digest", "critical.image.docker-manifest-digest"); err != nil {
		return nil, payloadErr(err.Error())
	}
	if !ValidDigest(p.Digest) {
		return nil, payloadErr(fmt.Sprintf("critical.image.docker-manifest-digest %q is not a sha256 or sha512 digest", truncate(p.Digest, 80)))
	}
	if raw, ok := critical["identity"]; ok {
		identity, err := object(raw, "critical.identity", "docker-reference")
		if err != nil {
			return nil, payloadErr(err.Error())
		}
		if ref, ok := identity["docker-reference"]; ok {
			s, ok := ref.(string)
			if !ok {
				return nil, payloadErr("critical.identity.docker-reference is not a string")
			}
			p.DockerReference = s
		}
	}
	return p, nil
}

// ValidDigest reports whether d is "sha256:" and 64 lower-case hex digits,
// or "sha512:" and 128: the only digests a payload may name.
func ValidDigest(d string) bool {
	var hexLen int
	switch {
	case len(d) > 7 && d[:7] == "sha256:":
		hexLen, d = 64, d[7:]
	case len(d) > 7 && d[:7] == "sha512:":
		hexLen, d = 128, d[7:]
	default:
		return false
	}
	if len(d) != hexLen {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func payloadErr(msg string) error {
	return reasonf(ErrPayload, ErrPayload.Error()+": "+msg)
}

// decodeStrict decodes exactly one JSON value from b with the project's
// one strict reader (strictjson): invalid UTF-8, duplicate keys, nesting
// deeper than maxDepth and trailing data are refused. Numbers are
// json.Number, or float64 when floats is set (the form CEL conditions
// expect).
func decodeStrict(b []byte, maxDepth int, floats bool) (any, error) {
	return strictjson.Decode(b, strictjson.Options{MaxDepth: maxDepth, Floats: floats})
}

// object returns v as a JSON object whose keys are all in allowed.
func object(v any, what string, allowed ...string) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not a JSON object", what)
	}
	for k := range m {
		known := false
		for _, a := range allowed {
			if k == a {
				known = true
				break
			}
		}
		if !known {
			return nil, fmt.Errorf("unknown key %q in %s", truncate(k, 80), what)
		}
	}
	return m, nil
}

func requiredObject(m map[string]any, key, what string, allowed ...string) (map[string]any, error) {
	v, ok := m[key]
	if !ok {
		return nil, fmt.Errorf("%s is missing", what)
	}
	return object(v, what, allowed...)
}

func requiredString(m map[string]any, key, what string) (string, error) {
	v, ok := m[key]
	if !ok {
		return "", fmt.Errorf("%s is missing", what)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s is not a string", what)
	}
	return s, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func at(path string) string {
	if path == "" {
		return ""
	}
	path = truncate(path, 120)
	for _, r := range path {
		if !strconv.IsPrint(r) || r == '"' || r == '\\' {
			return " in " + strconv.Quote(path)
		}
	}
	return " in " + path
}

// truncate shortens untrusted text that goes into messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
