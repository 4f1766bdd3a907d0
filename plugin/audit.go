package plugin

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/sealgate/sealgate/runtimegate"
)

// auditTimeout bounds the decision on one running container's image.
const auditTimeout = 30 * time.Second

// auditWorkers bounds how many of those decisions run at once.
const auditWorkers = 2

// auditRunning decides on the images of the containers that exist when the
// plugin (re)connects or the trust store changes (why says which). The
// decisions warm the cache for the next container of each image; those the
// policy would deny are named at WARN level, counted and kept for
// `sealgate doctor` and /status: they started while sealgate was not
// deciding, or before the policy changed.
func (p *Plugin) auditRunning(pods []*api.PodSandbox, ctrs []*api.Container, why string) {
	p.auditMu.Lock()
	defer p.auditMu.Unlock()
	byID := make(map[string]*api.PodSandbox, len(pods))
	for _, pod := range pods {
		byID[pod.GetId()] = pod
	}
	var (
		mu         sync.Mutex
		unverified []runtimegate.Running
		wg         sync.WaitGroup
		work       = make(chan *api.Container)
	)
	for range auditWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				pod := byID[c.GetPodSandboxId()]
				ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
				d := p.decideContainer(ctx, containerRequest(pod, c), c)
				cancel()
				if d.Allowed && !d.WouldDeny {
					p.log.Info("decided ahead of time", "why", why, "image", d.Image, "digest", d.Digest, "rule", d.Rule, "source", d.Source)
					continue
				}
				r := runtimegate.Running{ID: c.GetId(), Namespace: pod.GetNamespace(), Pod: pod.GetName(), Container: c.GetName(),
					Image: d.Image, Digest: d.Digest, Reasons: d.Reasons}
				p.stats.Unverified.Add(1)
				if p.warnings.first("unverified " + why + " " + r.ID + " " + r.Digest + " " + d.Rule) {
					p.log.Warn("a running container's image is not allowed by the policy", "why", why, "pod", r.Namespace+"/"+r.Pod, "container", r.Container,
						"id", r.ID, "image", r.Image, "digest", r.Digest, "rule", d.Rule, "reasons", d.Reasons)
				}
				mu.Lock()
				unverified = append(unverified, r)
				mu.Unlock()
			}
		}()
	}
	for _, c := range ctrs {
		if s := c.GetState(); s == api.ContainerState_CONTAINER_STOPPED {
			continue
		}
		work <- c
	}
	close(work)
	wg.Wait()
	slices.SortFunc(unverified, func(a, b runtimegate.Running) int { return strings.Compare(a.ID, b.ID) })
	p.unverified = unverified
	p.gate.setUnverified(unverified)
	if len(unverified) > 0 {
		p.log.Warn("running containers the policy would deny", "why", why, "count", len(unverified))
	}
}
