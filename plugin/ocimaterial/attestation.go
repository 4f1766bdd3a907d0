package ocimaterial

import (
	"bytes"

	"github.com/sealgate/sealgate/plugin/artifact"
)

// DSSEMediaType is the media type of a layer of cosign's attestation
// manifest: a DSSE envelope whose payload is an in-toto statement (cosign
// v2, pkg/types.DssePayloadType).
const DSSEMediaType = "application/vnd.dsse.envelope.v1+json"

// ParseAttestationManifest reads the manifest found at an attestation tag.
// Counts share the signature limit; each envelope is bounded by
// lim.EnvelopeBytes. Every layer must be a DSSE envelope: a layer of another
// kind in an attestation manifest is malformed, and says so, rather than
// being passed on for verify to guess at.
func ParseAttestationManifest(body []byte, lim Limits) ([]Layer, error) {
	return ParseAttestationManifestCounted(body, lim, nil)
}

// ParseAttestationManifestCounted is ParseAttestationManifest, adding the
// layers it leaves out to skipped when not nil.
func ParseAttestationManifestCounted(body []byte, lim Limits, skipped *int) ([]Layer, error) {
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

// NewAttestation turns an attestation layer and its envelope into the
// material that package verify checks. The envelope must already be checked
// against the layer's digest (CheckBlob). cosign writes an empty signature
// annotation on these layers (the envelope carries its signatures) and a
// "predicateType" annotation, which is not signed and so not passed on.
func NewAttestation(l Layer, envelope []byte, attached, origin string) artifact.Attestation {
	a := artifact.Attestation{
		Envelope: bytes.Clone(envelope),
		Attached: attached,
		Origin:   origin,
	}
	if v, ok := l.Annotations[AnnotationCertificate]; ok {
		a.Certificate = []byte(v)
	}
	if v, ok := l.Annotations[AnnotationChain]; ok {
		a.Chain = []byte(v)
	}
	if v, ok := l.Annotations[AnnotationBundle]; ok {
		a.RekorBundle = []byte(v)
	}
	if v, ok := l.Annotations[AnnotationTimestamp]; ok {
		a.Timestamp = []byte(v)
	}
	return a
}
