package plugin

import (
	"context"
	"fmt"
	"strings"

	eventstypes "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/typeurl/v2"
)

// ContainerdResolver answers Resolver questions from containerd's own
// metadata store: the image a pod sandbox was created from and the digest
// an image name was pulled at. It never contacts a registry.
type ContainerdResolver struct {
	client    *containerd.Client
	namespace string
}

var _ Resolver = (*ContainerdResolver)(nil)

// NewContainerdResolver connects to containerd at address; namespace is the
// CRI's namespace ("k8s.io").
func NewContainerdResolver(address, namespace string) (*ContainerdResolver, error) {
	c, err := containerd.New(address, containerd.WithDefaultNamespace(namespace))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	return &ContainerdResolver{client: c, namespace: namespace}, nil
}

// ImageDigest returns the target digest of the image record name.
func (r *ContainerdResolver) ImageDigest(ctx context.Context, name string) (string, error) {
	ctx = namespaces.WithNamespace(ctx, r.namespace)
	img, err := r.client.ImageService().Get(ctx, name)
	if err != nil {
		return "", fmt.Errorf("look up image %s in containerd: %w", name, err)
	}
	return img.Target.Digest.String(), nil
}

// SandboxImage returns the image of the sandbox container of pod podID
// (containerd's pod sandbox controller names it after the pod).
func (r *ContainerdResolver) SandboxImage(ctx context.Context, podID string) (string, string, error) {
	ctx = namespaces.WithNamespace(ctx, r.namespace)
	c, err := r.client.ContainerService().Get(ctx, podID)
	if err != nil {
		return "", "", fmt.Errorf("look up sandbox container %s in containerd: %w", podID, err)
	}
	if c.Image == "" {
		return "", "", fmt.Errorf("sandbox container %s has no image", podID)
	}
	digest, err := r.ImageDigest(ctx, c.Image)
	if err != nil {
		return "", "", err
	}
	return c.Image, digest, nil
}

// Close closes the containerd connection.
func (r *ContainerdResolver) Close() error { return r.client.Close() }

// WatchPulls calls pulled for every image containerd creates or updates in
// the resolver's namespace (a pull, or a tag moved to a new digest), until
// ctx ends or the event stream fails. Image IDs (bare "sha256:…" names)
// are skipped: the CRI records the same image under its reference too.
func (r *ContainerdResolver) WatchPulls(ctx context.Context, pulled func(name, digest string)) error {
	envs, errs := r.client.Subscribe(ctx, `topic=="/images/create"`, `topic=="/images/update"`)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return fmt.Errorf("containerd events: %w", err)
		case env := <-envs:
			if env == nil || env.Namespace != r.namespace || env.Event == nil {
				continue
			}
			ev, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				continue
			}
			var name string
			switch e := ev.(type) {
			case *eventstypes.ImageCreate:
				name = e.Name
			case *eventstypes.ImageUpdate:
				name = e.Name
			default:
				continue
			}
			if name == "" || strings.HasPrefix(name, "sha256:") {
				continue
			}
			digest, err := r.ImageDigest(ctx, name)
			if err != nil {
				continue
			}
			pulled(name, digest)
		}
	}
}
