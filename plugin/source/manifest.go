package source

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

var _ ManifestSource = (*Registry)(nil)

// Manifest fetches the manifest or index that image names, byte for byte,
// from a host allowed to pull, checks it against the digest and returns it
// with its media type (from the body, which the digest covers, or else the
// Content-Type). `sealgate bundle export` stores it so that Describe works
// on a node without the registry. A digest no host has is an error
// wrapping ErrNotFound.
func (r *Registry) Manifest(ctx context.Context, image name.Digest) (string, []byte, error) {
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return "", nil, fmt.Errorf("manifest of %s: image digest: %w", image, err)
	}
	targets, err := r.targets(image.Context())
	if err != nil {
		return "", nil, fmt.Errorf("manifest of %s: %w", image, err)
	}
	pullers := withCapability(targets, docker.HostCapabilityPull)
	if len(pullers) == 0 {
		return "", nil, fmt.Errorf("manifest of %s: no host of %s may pull (capability pull)", image, image.RegistryStr())
	}
	type raw struct {
		mt   string
		body []byte
	}
	got, err := tryHosts(ctx, pullers, func(ctx context.Context, t *target) (raw, error) {
		desc, err := t.puller.Get(withBodyLimit(ctx, r.limits.ManifestBytes), t.repo.Digest(h.String()))
		if err != nil {
			return raw{}, err
		}
		m, err := ocimaterial.ParseDescription(h, string(desc.MediaType), desc.Manifest)
		if err != nil {
			return raw{}, err
		}
		return raw{mt: m.MediaType, body: desc.Manifest}, nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("manifest of %s: %w", image, err)
	}
	return got.mt, got.body, nil
}
