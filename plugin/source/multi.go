package source

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/plugin/artifact"
)

// Holder is implemented by sources that can say whether they know an image
// at all (bundlestore.Store: it has an entry for it). Multi asks it to tell
// "this source knows the image and has none of this kind" (an answer) from
// "this source knows nothing of the image" (no answer), which an empty
// slice alone cannot say.
type Holder interface {
	Holds(ctx context.Context, image name.Digest) (bool, error)
}

// Multi asks several sources — typically the local bundle store and the
// registry — and merges what they find. It is how an air-gapped node, or a
// node whose registry is down, uses imported material while still telling
// the decision engine when it is deciding without the registry.
//
// For Signatures, Attestations and Bundles, every source is asked at once,
// and:
//
//   - any source failing with an error other than ErrUnreachable fails the
//     call (fail closed: a registry refusing our credentials, a damaged
//     store, a limit exceeded are never papered over by another source);
//   - otherwise, with every source reachable, the answer is the union of
//     theirs, in source order, without duplicates;
//   - with some sources unreachable, the union of the others is the answer
//     (nil error) when at least one of them answered for this image: it
//     returned material of this kind, or it is a Holder that holds the
//     image (the local store has an entry for it). Imported material thus
//     decides while the registry is down, even for a kind the import did
//     not carry;
//   - otherwise (every source unreachable, or the reachable ones know
//     nothing of the image) the call fails with an error wrapping
//     ErrUnreachable, so that the engine may fall back on a cached verdict:
//     the source that could not be asked might have had the material.
//
// Describe asks the sources in order and returns the first answer; a
// manifest is checked against its digest whichever source serves it, so
// order matters only for speed: put the local store first.
type Multi struct {
	sources []Source
}

var (
	_ Source         = (*Multi)(nil)
	_ ManifestSource = (*Multi)(nil)
	_ Holder         = (*Multi)(nil)
)

// NewMulti combines sources, asked as described on Multi.
func NewMulti(sources ...Source) (*Multi, error) {
	if len(sources) == 0 {
		return nil, errors.New("combined source: no sources")
	}
	for i, s := range sources {
		if s == nil {
			return nil, fmt.Errorf("combined source: source %d is nil", i)
		}
	}
	return &Multi{sources: append([]Source(nil), sources...)}, nil
}

// Signatures returns the union of the sources' classic signatures.
func (m *Multi) Signatures(ctx context.Context, image name.Digest) ([]artifact.Signature, error) {
	return gather(ctx, m, image, Source.Signatures, signatureKey)
}

// Attestations returns the union of the sources' classic attestations.
func (m *Multi) Attestations(ctx context.Context, image name.Digest) ([]artifact.Attestation, error) {
	return gather(ctx, m, image, Source.Attestations, attestationKey)
}

// Bundles returns the union of the sources' Sigstore bundles.
func (m *Multi) Bundles(ctx context.Context, image name.Digest) ([]artifact.Bundle, error) {
	return gather(ctx, m, image, Source.Bundles, bundleKey)
}

// Describe returns the first description a source gives, in source order.
// When none gives one, the error wraps ErrNotFound only if every source
// said not found, ErrUnreachable if some could not be asked and none
// failed otherwise.
func (m *Multi) Describe(ctx context.Context, image name.Digest) (artifact.Manifest, error) {
	return first(ctx, m, func(s Source) (artifact.Manifest, error) { return s.Describe(ctx, image) })
}

// Resolve asks the first source that resolves tags (the registry).
func (m *Multi) Resolve(ctx context.Context, tag name.Tag) (string, error) {
	for _, s := range m.sources {
		if r, ok := s.(interface {
			Resolve(context.Context, name.Tag) (string, error)
		}); ok {
			return r.Resolve(ctx, tag)
		}
	}
	return "", fmt.Errorf("resolve %s: %w: no source resolves tags", tag, ErrNotFound)
}

// Manifest returns the first manifest a ManifestSource among the sources
// gives, in source order, with Describe's errors.
func (m *Multi) Manifest(ctx context.Context, image name.Digest) (string, []byte, error) {
	type raw struct {
		mt   string
		body []byte
	}
	r, err := first(ctx, m, func(s Source) (raw, error) {
		ms, ok := s.(ManifestSource)
		if !ok {
			return raw{}, fmt.Errorf("%T keeps no manifests: %w", s, ErrNotFound)
		}
		mt, body, err := ms.Manifest(ctx, image)
		return raw{mt, body}, err
	})
	return r.mt, r.body, err
}

// Holds reports whether any source that is a Holder holds image.
func (m *Multi) Holds(ctx context.Context, image name.Digest) (bool, error) {
	for _, s := range m.sources {
		h, ok := s.(Holder)
		if !ok {
			continue
		}
		held, err := h.Holds(ctx, image)
		if err != nil || held {
			return held, err
		}
	}
	return false, nil
}

type answer[T any] struct {
	items []T
	err   error
	held  bool
}

func gather[T any](ctx context.Context, m *Multi, image name.Digest,
	fetch func(Source, context.Context, name.Digest) ([]T, error), key func(T) [32]byte) ([]T, error) {
	answers := make([]answer[T], len(m.sources))
	var wg sync.WaitGroup
	for i, s := range m.sources {
		wg.Go(func() {
			a := &answers[i]
			a.items, a.err = fetch(s, ctx, image)
			if a.err != nil || len(a.items) > 0 {
				return
			}
			if h, ok := s.(Holder); ok {
				a.held, a.err = h.Holds(ctx, image)
			}
		})
	}
	wg.Wait()

	var failed, unreachable []error
	answered := false
	for _, a := range answers {
		switch {
		case a.err == nil:
			answered = answered || len(a.items) > 0 || a.held
		case errors.Is(a.err, ErrUnreachable):
			unreachable = append(unreachable, a.err)
		default:
			failed = append(failed, a.err)
		}
	}
	switch {
	case len(failed) > 0:
		return nil, errors.Join(failed...)
	case len(unreachable) == len(m.sources):
		return nil, errors.Join(unreachable...)
	case len(unreachable) > 0 && !answered:
		return nil, fmt.Errorf("no other source holds material for %s: %w", image, errors.Join(unreachable...))
	}
	out := []T{}
	seen := map[[32]byte]bool{}
	for _, a := range answers {
		if a.err != nil {
			continue
		}
		for _, it := range a.items {
			k := key(it)
			if !seen[k] {
				seen[k] = true
				out = append(out, it)
			}
		}
	}
	return out, nil
}

// first asks the sources in order and returns the first answer. Without
// one, the error wraps only the sentinel that holds for all: a failure
// beats "unreachable", which beats "not found" (not found here and
// unreachable there is "unknown", never "not found").
func first[T any](ctx context.Context, m *Multi, ask func(Source) (T, error)) (T, error) {
	var (
		zero                          T
		failed, unreachable, notFound []error
	)
	for _, s := range m.sources {
		v, err := ask(s)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		switch {
		case errors.Is(err, ErrUnreachable):
			unreachable = append(unreachable, err)
		case errors.Is(err, ErrNotFound):
			notFound = append(notFound, err)
		default:
			failed = append(failed, err)
		}
	}
	switch {
	case len(failed) > 0:
		return zero, errors.Join(failed...)
	case len(unreachable) > 0:
		return zero, errors.Join(unreachable...)
	}
	return zero, errors.Join(notFound...)
}

// Keys that identify the same material found by two sources. Origin is
// left out: it says where, not what.
func signatureKey(s artifact.Signature) [32]byte {
	return fieldsKey(s.Payload, s.Signature, s.Certificate, s.Chain, s.RekorBundle, s.Timestamp, []byte(s.Attached))
}

func attestationKey(a artifact.Attestation) [32]byte {
	return fieldsKey(a.Envelope, a.Certificate, a.Chain, a.RekorBundle, a.Timestamp, []byte(a.Attached))
}

func bundleKey(b artifact.Bundle) [32]byte {
	return fieldsKey(b.JSON, []byte(b.MediaType), []byte(b.ArtifactType), []byte(b.Attached))
}

func fieldsKey(fields ...[]byte) [32]byte {
	h := sha256.New()
	for _, f := range fields {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
