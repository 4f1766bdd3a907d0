package source

import (
	"bytes"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/artifact"
)

// DSSEMediaType is the media type of a layer of cosign's attestation
// manifest: a DSSE envelope whose payload is an in-toto statement (cosign
// v2, pkg/types.DssePayloadType).
const DSSEMediaType = "application/vnd.dsse.envelope.v1+json"

// AttestationTag names the tag under which cosign stores the attestations
// of image: "<repo>:sha256-<hex>.att". Exported so that tests and tools put
// attestations exactly where Registry looks for them.
func AttestationTag(image name.Digest) (name.Tag, error) {
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return name.Tag{}, fmt.Errorf("image digest: %w", err)
	}
	return image.Context().Tag(h.Algorithm + "-" + h.Hex + ".att"), nil
}

// parseAttestationManifest reads the manifest found at an attestation tag.
// Counts share the signature limit; each envelope is bounded by
// lim.EnvelopeBytes. Every layer must be a DSSE envelope: a layer of another
// kind in an attestation manifest is malformed, and says so, rather than
// being passed on for verify to guess at.
func parseAttestationManifest(body []byte, lim Limits) ([]signatureLayer, error) {
	return parseAttestationManifestCounted(body, lim, nil)
}

// parseAttestationManifestCounted is parseAttestationManifest, adding the
// layers it leaves out to skipped when not nil.
func parseAttestationManifestCounted(body []byte, lim Limits, skipped *int) ([]signatureLayer, error) {
	layers, err := parseLayerManifest(body, "attestation", lim.Signatures, lim.EnvelopeBytes, skipped)
	if err != nil {
		return nil, err
	}
	// A layer that is not a DSSE envelope is junk beside the others:
	// skipped, not fatal.
	dsse := layers[:0]
	for _, l := range layers {
		if l.MediaType == DSSEMediaType {
			dsse = append(dsse, l)
		} else if skipped != nil {
			*skipped++
		}
	}
	return dsse, nil
}

// newAttestation turns an attestation layer and its envelope into the
// material that package verify checks. The envelope must already be checked
// against the layer's digest (checkBlob). cosign writes an empty signature
// annotation on these layers (the envelope carries its signatures) and a
// "predicateType" annotation, which is not signed and so not passed on.
func newAttestation(l signatureLayer, envelope []byte, attached, origin string) artifact.Attestation {
	a := artifact.Attestation{
		Envelope: bytes.Clone(envelope),
		Attached: attached,
		Origin:   origin,
	}
	if v, ok := l.Annotations[annotationCertificate]; ok {
		a.Certificate = []byte(v)
	}
	if v, ok := l.Annotations[annotationChain]; ok {
		a.Chain = []byte(v)
	}
	if v, ok := l.Annotations[annotationBundle]; ok {
		a.RekorBundle = []byte(v)
	}
	if v, ok := l.Annotations[annotationTimestamp]; ok {
		a.Timestamp = []byte(v)
	}
	return a
}
