package plugin

import (
	"container/list"
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/nri/pkg/api"

	"github.com/sealgate/sealgate/runtimegate"
)

// RunningLister lists the containers the runtime runs now (their IDs),
// from the runtime's own API: what prunes the inventory before a
// re-evaluation, so that containers removed since are not named.
// ContainerdResolver is one.
type RunningLister interface {
	RunningContainers(ctx context.Context) (map[string]bool, error)
}

// maxInventory bounds the containers kept; past it the oldest is dropped.
// A node runs a few hundred containers; the bound only matters when the
// runtime's list cannot prune what was removed.
const maxInventory = 4096

// inventory is the runtime's containers as NRI reported them: all of them
// at Synchronize, then each one the plugin allowed. A trust change (a key
// revoked) is checked against it, after pruning it with the runtime's
// list of what runs, so that containers still running on what the new
// trust store would deny are named, not forgotten. It does not follow
// NRI's stop and remove events: subscribing to them would cost two more
// round trips to the runtime for every container.
type inventory struct {
	mu    sync.Mutex
	order list.List // of *invEntry, oldest first
	m     map[string]*list.Element
}

// invEntry is what a re-evaluation needs of a container: not the
// runtime's whole request (environment, mounts, annotations), which would
// cost kilobytes a container.
type invEntry struct {
	id, name, podID, pod, namespace string
	image, digest, imageAnnotation  string
}

func newEntry(p *api.PodSandbox, c *api.Container) invEntry {
	e := invEntry{id: c.GetId(), name: c.GetName(), podID: c.GetPodSandboxId(), pod: p.GetName(), namespace: p.GetNamespace(),
		imageAnnotation: c.GetAnnotations()[imageNameAnnotation]}
	if img := c.GetImage(); img != nil {
		e.image, e.digest = img.GetName(), img.GetDigest()
	}
	return e
}

func (i *inventory) reset(pods []*api.PodSandbox, ctrs []*api.Container) {
	i.mu.Lock()
	defer i.mu.Unlock()
	byID := make(map[string]*api.PodSandbox, len(pods))
	for _, p := range pods {
		byID[p.GetId()] = p
	}
	i.order.Init()
	i.m = make(map[string]*list.Element, len(ctrs))
	for _, c := range ctrs {
		if c.GetState() != api.ContainerState_CONTAINER_STOPPED {
			i.addLocked(byID[c.GetPodSandboxId()], c)
		}
	}
}

func (i *inventory) add(p *api.PodSandbox, c *api.Container) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.addLocked(p, c)
}

func (i *inventory) addLocked(p *api.PodSandbox, c *api.Container) {
	if i.m == nil {
		i.m = make(map[string]*list.Element)
	}
	if el, ok := i.m[c.GetId()]; ok {
		*el.Value.(*invEntry) = newEntry(p, c)
		return
	}
	e := newEntry(p, c)
	i.m[e.id] = i.order.PushBack(&e)
	for i.order.Len() > maxInventory {
		old := i.order.Front()
		i.order.Remove(old)
		delete(i.m, old.Value.(*invEntry).id)
	}
}

// prune keeps only the containers in running.
func (i *inventory) prune(running map[string]bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for id, el := range i.m {
		if !running[id] {
			i.order.Remove(el)
			delete(i.m, id)
		}
	}
}

// list returns the pods and containers kept, as the audit reads them,
// containers in ID order.
func (i *inventory) list() ([]*api.PodSandbox, []*api.Container) {
	i.mu.Lock()
	defer i.mu.Unlock()
	pods := map[string]*api.PodSandbox{}
	ctrs := make([]*api.Container, 0, len(i.m))
	for el := i.order.Front(); el != nil; el = el.Next() {
		e := el.Value.(*invEntry)
		c := &api.Container{Id: e.id, Name: e.name, PodSandboxId: e.podID, Image: &api.Image{Name: e.image, Digest: e.digest}}
		if e.imageAnnotation != "" {
			c.Annotations = map[string]string{imageNameAnnotation: e.imageAnnotation}
		}
		ctrs = append(ctrs, c)
		pods[e.podID] = &api.PodSandbox{Id: e.podID, Name: e.pod, Namespace: e.namespace}
	}
	out := make([]*api.PodSandbox, 0, len(pods))
	for _, p := range pods {
		out = append(out, p)
	}
	slices.SortFunc(ctrs, func(a, b *api.Container) int { return strings.Compare(a.GetId(), b.GetId()) })
	return out, ctrs
}

// Reevaluate decides again, under the trust store in force now, on the
// images of the containers the runtime runs, and names at WARN level (and
// in Unverified, the runtime gate's status and `sealgate doctor`) those it
// would now deny: after a trust change, what a revoked key signed keeps
// running until someone acts, and the operator must be told which pods
// those are. why says what changed, for the log.
func (p *Plugin) Reevaluate(why string) {
	if l, ok := p.resolver.(RunningLister); ok {
		ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
		running, err := l.RunningContainers(ctx)
		cancel()
		if err != nil {
			p.log.Warn("cannot list the runtime's running containers; re-evaluating every container seen since the connection (some may be gone)", "error", err.Error())
		} else {
			p.inv.prune(running)
		}
	}
	pods, ctrs := p.inv.list()
	p.log.Info("re-evaluating running containers", "why", why, "containers", len(ctrs))
	p.auditRunning(pods, ctrs, why)
}

// Unverified lists the running containers whose images the policy in force
// would deny, as the last audit (at connection or after a trust change)
// found them.
func (p *Plugin) Unverified() []runtimegate.Running {
	p.auditMu.Lock()
	defer p.auditMu.Unlock()
	return slices.Clone(p.unverified)
}
