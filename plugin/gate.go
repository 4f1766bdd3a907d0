package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/runtimegate"
)

// Gate is the daemon's side of the runtime gate (package runtimegate). It
// keeps the plugin's decisions by container ID and answers the runc wrapper
// from them, so that a container NRI let through without asking sealgate
// (sealgate killed, restarted, stalled) is still refused by the runtime.
// It outlives the plugin's connections: one Gate serves every reconnection.
type Gate struct {
	records  *runtimegate.Records
	decider  Decider
	resolver Resolver
	deadline time.Duration
	log      *slog.Logger

	checks, refusals atomic.Int64

	mu         sync.Mutex
	connected  bool
	runtime    string
	version    string
	inForce    time.Duration
	unverified []runtimegate.Running
	trust      runtimegate.Status // only the trust fields
	reload     func() error
}

var _ runtimegate.Checker = (*Gate)(nil)

// NewGate returns a gate that decides on sandboxes with d (their NRI event
// comes only after the runtime started them) under deadline, finding their
// image with r (nil: sandboxes are refused).
func NewGate(d Decider, r Resolver, deadline time.Duration, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.Default()
	}
	return &Gate{records: runtimegate.NewRecords(0, 0), decider: d, resolver: r, deadline: deadline, log: log, inForce: deadline}
}

// Check answers the wrapper for one container.
func (g *Gate) Check(ctx context.Context, req runtimegate.Request) runtimegate.Answer {
	g.checks.Add(1)
	a := g.check(ctx, req)
	attrs := []any{"id", req.ID, "kind", req.Kind, "pod", req.Namespace + "/" + req.Pod, "container", req.Container, "image", req.Image}
	if !a.Allowed {
		g.refusals.Add(1)
		g.log.Warn("runtime gate refused a container", append(attrs, "reason", a.Reason)...)
	} else if g.log.Enabled(ctx, slog.LevelDebug) {
		g.log.Debug("runtime gate allowed a container", attrs...)
	}
	return a
}

func (g *Gate) check(ctx context.Context, req runtimegate.Request) runtimegate.Answer {
	switch req.Kind {
	case runtimegate.KindContainer:
		rec, ok := g.records.Take(req.ID)
		if !ok && req.Escape && !g.isConnected() {
			// NRI's validator let the container by because sealgate is
			// not connected; the escape is honoured the same way.
			g.log.Warn("a container was started without sealgate's decision on the escape annotation: sealgate is not connected to the runtime",
				"annotation", runtimegate.EscapeAnnotation, "id", req.ID, "pod", req.Namespace+"/"+req.Pod, "container", req.Container, "image", req.Image)
			return runtimegate.Answer{Allowed: true, Reason: "escape annotation while sealgate is not connected to the runtime"}
		}
		if !ok {
			return runtimegate.Answer{Reason: "sealgate has no decision for this container: it was not asked when the container was created " +
				"(sealgate was stopped, restarted or too slow); the kubelet's next attempt is decided normally"}
		}
		if rec.Image != req.Image || rec.SandboxID != req.SandboxID {
			return runtimegate.Answer{Reason: fmt.Sprintf("sealgate decided on image %q in pod sandbox %s for this container, but the runtime is creating it from image %q in pod sandbox %s",
				rec.Image, rec.SandboxID, req.Image, req.SandboxID)}
		}
		return runtimegate.Answer{Allowed: rec.Allowed, Reason: rec.Reason}
	case runtimegate.KindSandbox:
		return g.checkSandbox(ctx, req)
	}
	return runtimegate.Answer{Reason: fmt.Sprintf("the container's spec has no %s annotation of a CRI container or sandbox (kind %q); sealgate only lets the runtime create containers it decided on",
		runtimegate.AnnotationContainerType, req.Kind)}
}

// checkSandbox decides on a pod sandbox's image, which containerd starts
// before it tells NRI plugins about the pod.
func (g *Gate) checkSandbox(ctx context.Context, req runtimegate.Request) runtimegate.Answer {
	if g.resolver == nil {
		return runtimegate.Answer{Reason: "sealgate has no containerd connection to find the sandbox's image (--containerd-address)"}
	}
	ctx, cancel := context.WithTimeout(ctx, g.deadline)
	defer cancel()
	asked := decision.Request{Image: req.Image, Namespace: req.Namespace}
	name, digest, err := g.resolver.SandboxImage(ctx, req.ID)
	if err != nil {
		return answer(g.decider.Refuse(asked, fmt.Sprintf("cannot find the sandbox image in the runtime's image store: %v", err)))
	}
	if name != req.Image {
		return answer(g.decider.Refuse(asked, fmt.Sprintf("the runtime's store says the sandbox runs %q but its spec names %q", name, req.Image)))
	}
	d := g.decider.Decide(ctx, decision.Request{Image: name, Digest: digest, Namespace: req.Namespace})
	return answer(d)
}

// VerifyPull decides on an image containerd is about to pull, as the
// image verifier asks: the same engine and cache as every other decision,
// so the verdict is there before any container of the image exists.
func (g *Gate) VerifyPull(ctx context.Context, image, digest string) runtimegate.Answer {
	ctx, cancel := context.WithTimeout(ctx, pullDeadline)
	defer cancel()
	d := g.decider.Decide(ctx, decision.Request{Image: image, Digest: digest})
	a := answer(d)
	if !a.Allowed {
		g.log.Warn("pull refused", "image", image, "digest", digest, "reason", a.Reason)
	} else {
		g.log.Info("pull verified", "image", image, "digest", digest, "rule", d.Rule, "source", d.Source)
	}
	return a
}

// pullDeadline bounds a decision at pull time: containerd gives a verifier
// 10 s by default, and nothing waits on the pull but its puller.
const pullDeadline = 8 * time.Second

// answer turns a decision into the gate's answer.
func answer(d decision.Decision) runtimegate.Answer {
	if err := d.Err(); err != nil {
		return runtimegate.Answer{Reason: err.Error()}
	}
	if d.WouldDeny {
		return runtimegate.Answer{Allowed: true, Reason: "allowed by " + d.Mode + " mode: " + strings.Join(d.Reasons, "; ")}
	}
	return runtimegate.Answer{Allowed: true}
}

// record keeps the decision the plugin made about container id for the
// runtime gate. image is the name the runtime's spec carries
// (io.kubernetes.cri.image-name).
func (g *Gate) record(id, image, sandboxID string, d decision.Decision) {
	if g == nil || id == "" {
		return
	}
	a := answer(d)
	g.records.Put(id, runtimegate.Record{Image: image, SandboxID: sandboxID, Allowed: a.Allowed, Reason: a.Reason})
}

// setConnected records the runtime connection's state.
func (g *Gate) setConnected(on bool, runtime, version string, deadline time.Duration) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.connected = on
	if on {
		g.runtime, g.version, g.inForce = runtime, version, deadline
	}
}

func (g *Gate) isConnected() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.connected
}

// setUnverified records the running containers the policy would deny.
func (g *Gate) setUnverified(r []runtimegate.Running) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unverified = r
}

// SetTrust says which trust store the daemon decides with; noTPM when it
// runs without one.
func (g *Gate) SetTrust(noTPM bool, dir string, generation uint64, digest string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.trust = runtimegate.Status{InsecureNoTPM: noTPM, TrustDir: dir, TrustGeneration: generation, TrustDigest: digest,
		ReloadsAccepted: g.trust.ReloadsAccepted, ReloadsRefused: g.trust.ReloadsRefused}
}

// OnReload sets what a reload request on the runtime gate's socket runs
// (sealgate trust seal on a running node).
func (g *Gate) OnReload(fn func() error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reload = fn
}

// Reload runs the reload set with OnReload.
func (g *Gate) Reload() error {
	g.mu.Lock()
	fn := g.reload
	g.mu.Unlock()
	if fn == nil {
		return errors.New("this daemon cannot reload its trust store")
	}
	return fn()
}

// SetReloads records the reloads accepted and refused, for Status.
func (g *Gate) SetReloads(accepted, refused int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.trust.ReloadsAccepted, g.trust.ReloadsRefused = accepted, refused
}

// Status reports the daemon's state.
func (g *Gate) Status() runtimegate.Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	u := make([]runtimegate.Running, len(g.unverified))
	copy(u, g.unverified)
	return runtimegate.Status{Connected: g.connected, Runtime: g.runtime, RuntimeVersion: g.version, Deadline: g.inForce.String(),
		Records: g.records.Len(), Checks: g.checks.Load(), Refusals: g.refusals.Load(), Unverified: u,
		InsecureNoTPM: g.trust.InsecureNoTPM, TrustDir: g.trust.TrustDir, TrustGeneration: g.trust.TrustGeneration, TrustDigest: g.trust.TrustDigest,
		ReloadsAccepted: g.trust.ReloadsAccepted, ReloadsRefused: g.trust.ReloadsRefused}
}

// LogEscapes logs, once, every container the wrapper started on the escape
// annotation while sealgate did not answer.
func (g *Gate) LogEscapes(socket string) {
	escapes, errs := runtimegate.TakeEscapes(socket)
	for _, e := range escapes {
		g.log.Warn("a container was started without sealgate on the escape annotation", "annotation", runtimegate.EscapeAnnotation,
			"at", e.Time.Format(time.RFC3339), "id", e.ID, "kind", e.Kind, "pod", e.Namespace+"/"+e.Pod, "container", e.Container, "image", e.Image, "why", e.Why)
	}
	for _, err := range errs {
		g.log.Warn("unreadable escape note", "error", err)
	}
}
