// Package source finds the signature material attached to an image: in a
// registry and, later, in a local bundle store. It never decides whether
// anything is good; that is package verify's job. Three kinds are found:
//
//   - cosign's classic signatures: the "<repo>:sha256-<hex>.sig" tag, one
//     simple-signing payload per layer, with the signature, certificate,
//     chain, Rekor bundle and RFC 3161 timestamp annotations;
//   - cosign's classic attestations: the "sha256-<hex>.att" tag, one DSSE
//     envelope per layer (media type application/vnd.dsse.envelope.v1+json,
//     anything else is an error), with the same annotations but the
//     signature, which the envelope carries;
//   - Sigstore bundles (v0.1 to v0.3) attached as OCI 1.1 referrers, as
//     `cosign sign|attest --new-bundle-format` writes them.
//
// Registry reaches a registry the way containerd does, from the same
// certs.d/<host>/hosts.toml (mirrors in order, server, plain HTTP, CAs and
// client certificates, capabilities, override_path), so that one file
// configures both. Decisions an operator may want to know:
//
//   - Hosts are tried in order. Not found, unreachable and failing hosts all
//     fall through to the next, as in containerd.
//   - Unreachable (ErrUnreachable) means no host gave a usable answer:
//     connection refused or reset, DNS failure, a per-request timeout, or a
//     server error (5xx, 408, 429), which says the registry cannot serve now,
//     not what it holds. Authentication (401, 403), certificate errors,
//     limits and bad content are errors of their own, never ErrUnreachable,
//     so they cannot be mistaken for an outage that a cached verdict may ride
//     out.
//   - "None" is answered only when every host said not found. If a host
//     could not be asked and the others do not have it, the answer is
//     ErrUnreachable: the host that was down may have had it.
//   - A signature annotation that is not valid base64 yields a Signature
//     with no signature bytes and the reason in Origin, so that verify
//     rejects it with that reason rather than it disappearing.
//   - Every reply body is bounded (Limits) and every request timed out
//     (WithTimeout); content is checked against its digest. A limit
//     exceeded is an error wrapping ErrLimit, never a silent cut.
//
// Bundles are found as containerd finds referrers. Hosts with the
// "referrers" capability are asked for GET /v2/<repo>/referrers/<digest>
// and, when they do not serve the API (404, 400, 406 or a reply that is not
// an OCI index), for the index at the fallback tag "sha256-<hex>"
// (go-containerregistry's remote.Referrers, through the same per-host
// transports); when no host has that capability, hosts that may resolve
// tags are asked for the fallback tag only. A host whose listing has
// nothing that may be a bundle counts as "not found" there. Then:
//
//   - The listing only narrows: entries that are not image manifests, or
//     whose listed artifact type is neither a bundle type, the empty config
//     type (which some registries, and the fallback index cosign writes,
//     report instead of the artifact type) nor empty, are not fetched.
//     Trusting the listing to leave things out can cost an image its bundles
//     but never admit one. Duplicates are dropped; more than
//     Limits.Referrers entries remaining is ErrLimit.
//   - Each remaining manifest is fetched by digest and decides for itself:
//     its own artifactType (or, without one, its config media type) must be
//     a Sigstore bundle media type (IsBundleMediaType) and its subject must
//     name the image digest; otherwise it is skipped, whatever the listing
//     claimed. A manifest no host has any more is skipped too (a fallback
//     index outlives what it lists).
//   - A manifest that passes must have exactly one layer, of a bundle media
//     type, within Limits.BundleBytes; otherwise it is an error. The layer
//     is the bundle.
package source

import (
	"context"
	"errors"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/plugin/artifact"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

// Source finds signature material for an image digest.
type Source interface {
	// Signatures returns the cosign signatures attached to image. No
	// signatures is an empty slice and a nil error.
	Signatures(ctx context.Context, image name.Digest) ([]artifact.Signature, error)
	// Describe says what the digest names: a manifest or an index and its children.
	Describe(ctx context.Context, image name.Digest) (artifact.Manifest, error)
	// Attestations returns the DSSE envelopes of cosign's classic
	// `sha256-<digest>.att` tag. None is an empty slice and a nil error.
	Attestations(ctx context.Context, image name.Digest) ([]artifact.Attestation, error)
	// Bundles returns the Sigstore bundles attached to image: OCI 1.1
	// referrers whose manifest's artifact type is a Sigstore bundle, or,
	// when the registry has no referrers API, those of cosign's tag
	// fallback (the `sha256-<digest>` index). None is an empty slice and a
	// nil error.
	Bundles(ctx context.Context, image name.Digest) ([]artifact.Bundle, error)
}

var (
	// ErrUnreachable wraps failures to reach any host of the registry
	// (connection refused, DNS, timeouts). Callers branch on it to decide
	// whether a cached verdict may serve offline.
	ErrUnreachable = errors.New("signature source unreachable")
	// ErrLimit wraps replies that exceed a size or count limit (the
	// sentinel of package ocimaterial, which applies the limits).
	ErrLimit = ocimaterial.ErrLimit
	// ErrNotFound wraps a digest the registry does not have.
	ErrNotFound = errors.New("not found")
)

// ManifestSource is a Source that can also return the manifest or index an
// image digest names, byte for byte, so that an export carries it and
// Describe works offline. The body must hash to the digest.
type ManifestSource interface {
	Source
	Manifest(ctx context.Context, image name.Digest) (mediaType string, body []byte, err error)
}
