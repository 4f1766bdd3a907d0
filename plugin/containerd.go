package plugin

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
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
