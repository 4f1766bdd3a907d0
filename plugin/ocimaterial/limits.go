package ocimaterial

import (
	"errors"
	"fmt"
)

// ErrLimit wraps material that exceeds a size or count limit.
var ErrLimit = errors.New("reply exceeds limit")

// Defaults of Limits.
const (
	// DefaultManifestBytes bounds a manifest or index, and every other reply
	// that is not a signature payload (pings, tokens, error bodies).
	DefaultManifestBytes int64 = 4 << 20
	// DefaultPayloadBytes bounds one signature layer (a simple-signing
	// payload is well under 1 KiB; cosign itself caps payloads at 128 MiB,
	// which is far too much for a node's hot path).
	DefaultPayloadBytes int64 = 256 << 10
	// DefaultSignatures bounds the number of layers of a signature manifest
	// and of an attestation manifest that are fetched; the rest are skipped.
	DefaultSignatures = 128
	// DefaultEnvelopeBytes bounds one DSSE envelope of cosign's attestation
	// tag. An in-toto statement with a SLSA provenance predicate is a few
	// KiB; an SBOM put in a predicate can be far larger, and is not what a
	// node's admission path should download.
	DefaultEnvelopeBytes int64 = 1 << 20
	// DefaultBundleBytes bounds one Sigstore bundle (its certificate chain,
	// transparency-log entries and DSSE envelope or message signature).
	DefaultBundleBytes int64 = 1 << 20
	// DefaultReferrers bounds the referrers of one image whose manifests are
	// fetched to look for Sigstore bundles; the rest are skipped.
	DefaultReferrers = 64
)

// Limits bounds what a registry can make sealgate read. A hostile or broken
// registry must not be able to exhaust the node's memory or the runtime's
// request timeout. A zero field takes its default; a negative one is an
// error.
type Limits struct {
	// ManifestBytes bounds a manifest, an index and any other reply body
	// except signature payloads. Default DefaultManifestBytes.
	ManifestBytes int64
	// PayloadBytes bounds one signature layer. Default DefaultPayloadBytes.
	PayloadBytes int64
	// Signatures bounds the layers of one signature manifest, and of one
	// attestation manifest. Default DefaultSignatures.
	Signatures int
	// EnvelopeBytes bounds one DSSE envelope of an attestation manifest.
	// Default DefaultEnvelopeBytes.
	EnvelopeBytes int64
	// BundleBytes bounds one Sigstore bundle attached as a referrer.
	// Default DefaultBundleBytes.
	BundleBytes int64
	// Referrers bounds the referrers of one image that may hold a Sigstore
	// bundle (after duplicates and referrers that the listing says are of
	// another kind are dropped). More is an error wrapping ErrLimit, not a
	// silent cut: which ones to drop would be the registry's choice.
	// Default DefaultReferrers.
	Referrers int
}

func (l Limits) WithDefaults() (Limits, error) {
	if l.ManifestBytes < 0 || l.PayloadBytes < 0 || l.Signatures < 0 ||
		l.EnvelopeBytes < 0 || l.BundleBytes < 0 || l.Referrers < 0 {
		return Limits{}, fmt.Errorf("limits must not be negative: %+v", l)
	}
	if l.ManifestBytes == 0 {
		l.ManifestBytes = DefaultManifestBytes
	}
	if l.PayloadBytes == 0 {
		l.PayloadBytes = DefaultPayloadBytes
	}
	if l.Signatures == 0 {
		l.Signatures = DefaultSignatures
	}
	if l.EnvelopeBytes == 0 {
		l.EnvelopeBytes = DefaultEnvelopeBytes
	}
	if l.BundleBytes == 0 {
		l.BundleBytes = DefaultBundleBytes
	}
	if l.Referrers == 0 {
		l.Referrers = DefaultReferrers
	}
	return l, nil
}
