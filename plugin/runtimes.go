package plugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// RuntimeAware is told which runtime the plugin is connected to, as NRI's
// Configure names it ("containerd", "cri-o").
type RuntimeAware interface {
	UseRuntime(name, version string) error
}

// errNoContainerImage: the runtime's resolver cannot find a container's
// image from its annotations (containerd sends the image itself).
var errNoContainerImage = errors.New("the runtime's image store does not find images from annotations")

// RuntimeResolver is the Resolver of whichever runtime the plugin is
// connected to: containerd's image store on containerd, the CRI
// ImageService on CRI-O, chosen when the runtime says what it is. A node
// runs one runtime, but sealgate does not need to be told which: nothing
// is dialled until the runtime has said, and nothing of the other is used.
type RuntimeResolver struct {
	containerd, crio Resolver
	cur              atomic.Pointer[chosen]
	mu               sync.Mutex
	onUse            []func(runtime string)
}

type chosen struct {
	runtime string
	r       Resolver // nil: none for this runtime
}

var (
	_ Resolver        = (*RuntimeResolver)(nil)
	_ RunningLister   = (*RuntimeResolver)(nil)
	_ ContainerImager = (*RuntimeResolver)(nil)
	_ RuntimeAware    = (*RuntimeResolver)(nil)
)

// NewRuntimeResolver chooses between containerd's resolver and CRI-O's;
// either may be nil (not configured).
func NewRuntimeResolver(containerd, crio Resolver) *RuntimeResolver {
	return &RuntimeResolver{containerd: containerd, crio: crio}
}

// OnUse calls f each time a runtime is chosen (the composition root starts
// containerd's pull watcher on containerd).
func (r *RuntimeResolver) OnUse(f func(runtime string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onUse = append(r.onUse, f)
}

// UseRuntime implements RuntimeAware.
func (r *RuntimeResolver) UseRuntime(name, _ string) error {
	c := &chosen{runtime: name}
	switch name {
	case "cri-o":
		c.r = r.crio
	case "containerd":
		c.r = r.containerd
	}
	r.cur.Store(c)
	r.mu.Lock()
	fs := append([]func(string){}, r.onUse...)
	r.mu.Unlock()
	for _, f := range fs {
		f(name)
	}
	if c.r == nil {
		return fmt.Errorf("no connection to the image store of %s is configured (--containerd-address for containerd, --crio-address for CRI-O)", name)
	}
	return nil
}

func (r *RuntimeResolver) get() (Resolver, error) {
	c := r.cur.Load()
	switch {
	case c == nil:
		return nil, errors.New("the runtime has not said what it is yet")
	case c.r == nil:
		return nil, fmt.Errorf("no connection to the image store of %s", c.runtime)
	}
	return c.r, nil
}

// ImageDigest implements Resolver.
func (r *RuntimeResolver) ImageDigest(ctx context.Context, name string) (string, error) {
	res, err := r.get()
	if err != nil {
		return "", err
	}
	return res.ImageDigest(ctx, name)
}

// SandboxImage implements Resolver.
func (r *RuntimeResolver) SandboxImage(ctx context.Context, podID string) (string, string, error) {
	res, err := r.get()
	if err != nil {
		return "", "", err
	}
	return res.SandboxImage(ctx, podID)
}

// RunningContainers implements RunningLister.
func (r *RuntimeResolver) RunningContainers(ctx context.Context) (map[string]bool, error) {
	res, err := r.get()
	if err != nil {
		return nil, err
	}
	l, ok := res.(RunningLister)
	if !ok {
		return nil, errors.New("the runtime's image store cannot list containers")
	}
	return l.RunningContainers(ctx)
}

// ContainerImage implements ContainerImager.
func (r *RuntimeResolver) ContainerImage(ctx context.Context, ann map[string]string) (ImageOf, error) {
	res, err := r.get()
	if err != nil {
		return ImageOf{}, err
	}
	ci, ok := res.(ContainerImager)
	if !ok {
		return ImageOf{}, errNoContainerImage
	}
	return ci.ContainerImage(ctx, ann)
}
