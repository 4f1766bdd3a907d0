// Package artifact holds signature material exactly as a source found it,
// before anything about it has been checked. Sources produce these values and
// the verifier consumes them; keeping the types here lets the two packages
// stay independent of each other.
package artifact

import (
	"errors"
	"fmt"
	"sort"

	"github.com/containerd/platforms"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

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

// Lists reports whether the index lists the manifest digest.
func (m Manifest) Lists(digest string) bool {
	for _, c := range m.Children {
		if c.Digest == digest {
			return true
		}
	}
	return false
}

// Child is one manifest of an index.
type Child struct {
	Digest string
	// MediaType is the child's media type as the index lists it.
	MediaType string
	// Platform is "os/architecture[/variant]" for messages, empty when the
	// index did not say.
	Platform string
	// Spec is the platform exactly as the index lists it (nil when it
	// lists none): what the runtime's matcher is given.
	Spec *specs.Platform
}

// ErrPlatformUnknown is returned when the child the runtime would run
// cannot be told from the index alone.
var ErrPlatformUnknown = errors.New("the runtime's choice of platform manifest cannot be known")

// PlatformChild returns the digest of the child the container runtime
// runs on this node, chosen exactly as containerd chooses it
// (core/images.Manifest with the CRI's platforms.Default()): the children
// the matcher accepts, or that name no platform, stably sorted by the
// matcher's preference with those naming no platform last, and the first
// of them. It is "" when no child matches. A chosen child that names no
// platform runs only if its config's platform matches, and nothing runs
// otherwise, so it is still the only child that can run. A nested index
// is ErrPlatformUnknown.
func (m Manifest) PlatformChild(matcher platforms.MatchComparer) (string, error) {
	var cands []Child
	for _, c := range m.Children {
		if c.Spec == nil || matcher.Match(*c.Spec) {
			cands = append(cands, c)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].Spec == nil {
			return false
		}
		if cands[j].Spec == nil {
			return true
		}
		return matcher.Less(*cands[i].Spec, *cands[j].Spec)
	})
	if len(cands) == 0 {
		return "", nil
	}
	switch cands[0].MediaType {
	case "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json":
		return "", fmt.Errorf("%w: child %s is itself an index", ErrPlatformUnknown, cands[0].Digest)
	}
	return cands[0].Digest, nil
}

// NewChild is a child for the platform "os/arch[/variant]" as an index
// would list it; an empty or unparsable platform lists none.
func NewChild(digest, platform string) Child {
	c := Child{Digest: digest, MediaType: "application/vnd.oci.image.manifest.v1+json", Platform: platform}
	if spec, err := platforms.Parse(platform); err == nil && platform != "" {
		c.Spec = &spec
	}
	return c
}
