// Package artifact holds signature material exactly as a source found it,
// before anything about it has been checked. Sources produce these values and
// the verifier consumes them; keeping the types here lets the two packages
// stay independent of each other.
package artifact

import "strings"

// Signature is one cosign "classic" signature: one layer of the
// `sha256-<digest>.sig` manifest that cosign attaches next to an image. None of
// its fields has been verified; an empty field means the annotation was absent.
type Signature struct {
	// Payload is the signed simple-signing JSON document (the layer's blob).
	Payload []byte
	// Signature is the raw signature over Payload, decoded from the
	// `dev.cosignproject.cosign/signature` annotation.
	Signature []byte
	// Certificate is the PEM signing certificate (`dev.sigstore.cosign/certificate`).
	Certificate []byte
	// Chain is the PEM certificate chain (`dev.sigstore.cosign/chain`).
	Chain []byte
	// RekorBundle is the JSON of the `dev.sigstore.cosign/bundle` annotation.
	RekorBundle []byte
	// Timestamp is the JSON of the `dev.sigstore.cosign/rfc3161timestamp`
	// annotation (a TSA response over the signature), when present.
	Timestamp []byte
	// Attached is the digest whose signature tag held this signature.
	Attached string
	// Origin says where the signature came from, for messages, e.g.
	// "127.0.0.1:5000/app:sha256-ab12….sig layer 0".
	Origin string
}

// Attestation is one layer of cosign's classic `sha256-<digest>.att`
// manifest: a DSSE envelope holding an in-toto statement, with the same
// certificate and transparency-log annotations as a Signature. Nothing in it
// has been verified.
type Attestation struct {
	// Envelope is the DSSE envelope JSON (the layer's blob, media type
	// application/vnd.dsse.envelope.v1+json).
	Envelope []byte
	// Certificate, Chain, RekorBundle and Timestamp are as in Signature.
	Certificate []byte
	Chain       []byte
	RekorBundle []byte
	Timestamp   []byte
	// Attached is the digest whose attestation tag held this envelope.
	Attached string
	// Origin says where it came from, for messages.
	Origin string
}

// Bundle is a Sigstore bundle (v0.1 to v0.3, message signature or DSSE)
// attached to an image as an OCI 1.1 referrer, or through cosign's tag
// fallback for registries without the referrers API. Nothing in it has been
// verified.
type Bundle struct {
	// JSON is the bundle document.
	JSON []byte
	// MediaType is the bundle's own media type (e.g.
	// "application/vnd.dev.sigstore.bundle.v0.3+json").
	MediaType string
	// ArtifactType is the artifact type of the manifest that held it, as
	// the manifest itself says (not as a referrers listing claims).
	ArtifactType string
	// Attached is the image digest the manifest's subject names.
	Attached string
	// Origin says where it came from, for messages.
	Origin string
}

// Manifest describes what an image digest points at, as far as deciding on it
// needs: whether it is an index and, if so, its platform manifests.
type Manifest struct {
	Digest    string
	MediaType string
	// Children lists the manifests of an index; it is empty for a manifest.
	Children []Child
}

// IsIndex reports whether the digest names an image index (manifest list).
func (m Manifest) IsIndex() bool {
	switch m.MediaType {
	case "application/vnd.oci.image.index.v1+json",
		"application/vnd.docker.distribution.manifest.list.v2+json":
		return true
	}
	return false
}

// Child is one platform manifest of an index.
type Child struct {
	Digest string
	// Platform is "os/architecture[/variant]", empty when the index did not say.
	Platform string
}

// PlatformChild returns the digest of the index child for platform
// ("os/arch[/variant]"), or "" when the index has none. An exact match wins;
// otherwise a child of the same os/arch whose variant is unset, or the
// platform's own variant is unset, is taken.
func (m Manifest) PlatformChild(platform string) string {
	for _, c := range m.Children {
		if c.Platform == platform {
			return c.Digest
		}
	}
	osArch, variant := splitPlatform(platform)
	for _, c := range m.Children {
		cOsArch, cVariant := splitPlatform(c.Platform)
		if cOsArch == osArch && (variant == "" || cVariant == "") {
			return c.Digest
		}
	}
	return ""
}

func splitPlatform(p string) (osArch, variant string) {
	first := strings.IndexByte(p, '/')
	if first < 0 {
		return p, ""
	}
	if second := strings.IndexByte(p[first+1:], '/'); second >= 0 {
		return p[:first+1+second], p[first+2+second:]
	}
	return p, ""
}
