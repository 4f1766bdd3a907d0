// Package source finds the signatures attached to an image: in a registry
// (cosign's tag scheme) and, later, in a local bundle store. It never decides
// whether a signature is good; that is package verify's job.
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
//   - "No signatures" is answered only when every host said not found. If a
//     host could not be asked and the others do not have the tag, the answer
//     is ErrUnreachable: the host that was down may have had it.
//   - A signature annotation that is not valid base64 yields a Signature
//     with no signature bytes and the reason in Origin, so that verify
//     rejects it with that reason rather than it disappearing.
//   - Every reply body is bounded (Limits) and every request timed out
//     (WithTimeout); content is checked against its digest.
package source

import (
	"context"
	"errors"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/plugin/artifact"
)

// Source finds signature material for an image digest.
type Source interface {
	// Signatures returns the cosign signatures attached to image. No
	// signatures is an empty slice and a nil error.
	Signatures(ctx context.Context, image name.Digest) ([]artifact.Signature, error)
	// Describe says what the digest names: a manifest or an index and its children.
	Describe(ctx context.Context, image name.Digest) (artifact.Manifest, error)
}

var (
	// ErrUnreachable wraps failures to reach any host of the registry
	// (connection refused, DNS, timeouts). Callers branch on it to decide
	// whether a cached verdict may serve offline.
	ErrUnreachable = errors.New("signature source unreachable")
	// ErrLimit wraps replies that exceed a size or count limit.
	ErrLimit = errors.New("reply exceeds limit")
	// ErrNotFound wraps a digest the registry does not have.
	ErrNotFound = errors.New("not found")
)
