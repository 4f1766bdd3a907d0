package plugin

import (
	"context"
	"slices"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"

	"github.com/sealgate/sealgate/runtimegate"
)

// The NRI events that keep the inventory.
var (
	_ stub.StopContainerInterface   = (*Plugin)(nil)
	_ stub.RemoveContainerInterface = (*Plugin)(nil)
	_ stub.RemovePodInterface       = (*Plugin)(nil)
)

// inventory is the runtime's pods and containers as NRI reported them: all
// of them at Synchronize, then each one the plugin allowed, until the
// runtime stops or removes it. A trust change (a key revoked) is checked
// against it, so that containers still running on what the new trust
// store would deny are named, not forgotten.
type inventory struct {
	mu   sync.Mutex
	pods map[string]*api.PodSandbox
	ctrs map[string]*api.Container
}

func (i *inventory) reset(pods []*api.PodSandbox, ctrs []*api.Container) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.pods = make(map[string]*api.PodSandbox, len(pods))
	for _, p := range pods {
		i.pods[p.GetId()] = p
	}
	i.ctrs = make(map[string]*api.Container, len(ctrs))
	for _, c := range ctrs {
		if c.GetState() != api.ContainerState_CONTAINER_STOPPED {
			i.ctrs[c.GetId()] = c
		}
	}
}

func (i *inventory) addPod(p *api.PodSandbox) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.pods == nil {
		i.pods = make(map[string]*api.PodSandbox)
	}
	i.pods[p.GetId()] = p
}

func (i *inventory) addContainer(p *api.PodSandbox, c *api.Container) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.ctrs == nil {
		i.ctrs = make(map[string]*api.Container)
	}
	if i.pods == nil {
		i.pods = make(map[string]*api.PodSandbox)
	}
	if _, ok := i.pods[p.GetId()]; !ok {
		i.pods[p.GetId()] = p
	}
	i.ctrs[c.GetId()] = c
}

func (i *inventory) removeContainer(id string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.ctrs, id)
}

func (i *inventory) removePod(id string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.pods, id)
	for cid, c := range i.ctrs {
		if c.GetPodSandboxId() == id {
			delete(i.ctrs, cid)
		}
	}
}

// list returns the pods and the containers not stopped, containers in ID
// order.
func (i *inventory) list() ([]*api.PodSandbox, []*api.Container) {
	i.mu.Lock()
	defer i.mu.Unlock()
	pods := make([]*api.PodSandbox, 0, len(i.pods))
	for _, p := range i.pods {
		pods = append(pods, p)
	}
	ctrs := make([]*api.Container, 0, len(i.ctrs))
	for _, c := range i.ctrs {
		ctrs = append(ctrs, c)
	}
	slices.SortFunc(ctrs, func(a, b *api.Container) int { return cmpString(a.GetId(), b.GetId()) })
	return pods, ctrs
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// StopContainer drops a stopped container from the inventory (the CRI
// never starts a stopped container again; a restart is a new container).
func (p *Plugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.inv.removeContainer(c.GetId())
	return nil, nil
}

// RemoveContainer drops a removed container from the inventory.
func (p *Plugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.inv.removeContainer(c.GetId())
	return nil
}

// RemovePodSandbox drops a removed pod and its containers.
func (p *Plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.inv.removePod(pod.GetId())
	return nil
}

// Reevaluate decides again, under the trust store in force now, on the
// images of the containers the runtime runs, and names at WARN level (and
// in Unverified, the runtime gate's status and `sealgate doctor`) those it
// would now deny: after a trust change, what a revoked key signed keeps
// running until someone acts, and the operator must be told which pods
// those are. why says what changed, for the log.
func (p *Plugin) Reevaluate(why string) {
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
