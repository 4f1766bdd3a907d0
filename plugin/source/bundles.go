package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/sealgate/sealgate/plugin/artifact"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

// errNoReferrers is a host's listing with nothing that may be a bundle. It
// counts as "not found" at that host, so the next host is asked, as for a
// tag a mirror does not have.
var errNoReferrers = errors.New("no referrers that may be Sigstore bundles")

// fetchBundles lists image's referrers and reads the bundles among them.
//
// Hosts are chosen as containerd chooses them for referrers: those with the
// "referrers" capability, asked for the referrers API and, when they do not
// serve it, for the fallback tag (go-containerregistry's remote.Referrers
// does both); when no host has that capability, those that may resolve tags
// are asked for the fallback tag only. Each referrer's manifest is then
// fetched by digest from hosts allowed to pull.
func (r *Registry) fetchBundles(ctx context.Context, image name.Digest) ([]artifact.Bundle, error) {
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("image digest: %w", err)
	}
	targets, err := r.targets(image.Context())
	if err != nil {
		return nil, err
	}
	listers := withCapability(targets, docker.HostCapabilityReferrers)
	fallbackOnly := false
	if len(listers) == 0 {
		listers = withCapability(targets, docker.HostCapabilityPull|docker.HostCapabilityResolve)
		fallbackOnly = true
	}
	if len(listers) == 0 {
		return nil, fmt.Errorf("no host of %s may list referrers (capability referrers, or pull and resolve for the tag fallback)", image.RegistryStr())
	}
	refs, err := tryHosts(ctx, listers, func(ctx context.Context, t *target) ([]referrer, error) {
		body, err := r.listReferrers(ctx, t, h, fallbackOnly)
		if err != nil {
			return nil, err
		}
		var skipped int
		refs, err := parseReferrersCounted(body, r.limits, &skipped)
		r.skipped.Add(int64(skipped))
		if err != nil {
			return nil, err
		}
		if len(refs) == 0 {
			return nil, errNoReferrers
		}
		return refs, nil
	})
	if errors.Is(err, ErrNotFound) {
		return []artifact.Bundle{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("referrers: %w", err)
	}

	// A referrer that fails (a malformed manifest, a missing or oversized
	// blob) is skipped: junk attached beside a valid bundle must not hide
	// it. Only when every referrer failed is that an error.
	pullers := withCapability(targets, docker.HostCapabilityPull)
	found := make([]*artifact.Bundle, len(refs))
	errs := make([]error, len(refs))
	var g errgroup.Group
	g.SetLimit(blobJobs)
	for i, ref := range refs {
		g.Go(func() error {
			b, ok, err := r.fetchReferrer(ctx, pullers, image, h, ref)
			if err != nil {
				errs[i] = fmt.Errorf("referrer %s: %w", ref.Digest, err)
			}
			if ok {
				found[i] = &b
			}
			return nil
		})
	}
	_ = g.Wait()
	out, err := keepFetched(found, errs)
	if err != nil {
		return nil, err
	}
	for _, e := range errs {
		if e != nil {
			r.skipped.Add(1)
		}
	}
	return out, nil
}

// listReferrers returns one host's referrers listing of h, bounded by
// ManifestBytes: the referrers API reply, or the index at the fallback tag
// (an empty index when the host has neither).
func (r *Registry) listReferrers(ctx context.Context, t *target, h v1.Hash, fallbackOnly bool) ([]byte, error) {
	ctx = withBodyLimit(ctx, r.limits.ManifestBytes)
	if fallbackOnly || t.tr.lacksReferrersAPI() {
		desc, err := t.puller.Get(ctx, t.repo.Tag(h.Algorithm+"-"+h.Hex))
		if err != nil {
			return nil, err
		}
		return desc.Manifest, nil
	}
	idx, err := remote.Referrers(t.repo.Digest(h.String()), remote.Reuse(t.puller), remote.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	return idx.RawManifest()
}

// fetchReferrer fetches one referrer's manifest and, when the manifest
// itself says it is a bundle for h, the bundle. A manifest that no host has
// (a listing or fallback index may outlive what it lists) is skipped.
func (r *Registry) fetchReferrer(ctx context.Context, pullers []*target, image name.Digest, h v1.Hash, ref referrer) (artifact.Bundle, bool, error) {
	var servedBy string
	m, err := tryHosts(ctx, pullers, func(ctx context.Context, t *target) (ocimaterial.ReferrerManifest, error) {
		desc, err := t.puller.Get(withBodyLimit(ctx, r.limits.ManifestBytes), t.repo.Digest(ref.Digest.String()))
		if err != nil {
			return ocimaterial.ReferrerManifest{}, err
		}
		servedBy = t.host.Host
		if err := ocimaterial.CheckDigest(ref.Digest, desc.Manifest); err != nil {
			return ocimaterial.ReferrerManifest{}, err
		}
		return ocimaterial.ParseReferrerManifest(desc.Manifest)
	})
	if errors.Is(err, ErrNotFound) {
		return artifact.Bundle{}, false, nil
	}
	if err != nil {
		return artifact.Bundle{}, false, fmt.Errorf("manifest: %w", err)
	}
	layer, ok, err := ocimaterial.BundleLayer(m, h, r.limits)
	if err != nil || !ok {
		return artifact.Bundle{}, false, err
	}
	blob, err := tryHosts(ctx, pullers, func(ctx context.Context, t *target) ([]byte, error) {
		return r.fetchBlob(ctx, t, layer, r.limits.BundleBytes)
	})
	if err != nil {
		return artifact.Bundle{}, false, fmt.Errorf("bundle blob %s: %w", layer.Digest, err)
	}
	return artifact.Bundle{
		JSON:         blob,
		MediaType:    layer.MediaType,
		ArtifactType: m.ArtifactType,
		Attached:     h.String(),
		Origin:       "referrer " + image.Context().Digest(ref.Digest.String()).String() + viaMirror(image, servedBy),
	}, true, nil
}
