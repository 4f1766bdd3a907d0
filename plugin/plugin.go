// Package plugin is sealgate's NRI glue: it registers with the container
// runtime as an NRI plugin, asks the decision engine about the image of every
// pod sandbox and container the runtime is about to create, and turns a
// denial into the error the runtime hands back to the kubelet or crictl.
//
// It owns the deadline: whatever the registry does, an answer goes back well
// inside the runtime's request timeout, and in enforce mode an answer that
// could not be reached in time is a denial.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"

	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/decisionlog"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/runtimegate"
)

// Defaults for a plugin started without options.
const (
	DefaultName  = "sealgate"
	DefaultIndex = "10"
	// DefaultDeadline leaves a margin under containerd's default 2 s NRI
	// request timeout.
	DefaultDeadline = 1500 * time.Millisecond
	// imageNameAnnotation is set by containerd's CRI on every container; it
	// names the image when an older runtime does not send api.Image.
	imageNameAnnotation = "io.kubernetes.cri.image-name"
)

// Decider makes one decision; *decision.Engine is the implementation.
type Decider interface {
	Decide(ctx context.Context, req decision.Request) decision.Decision
	// Quick decides req when that needs no I/O (a cached verdict, the
	// policy alone), and reports false otherwise: the hot path asks it
	// first, without a goroutine or a timer.
	Quick(req decision.Request) (decision.Decision, bool)
	// Refuse is the denial of req for reason when it cannot be decided
	// (deadline, no digest), under the mode of the rule req matches.
	Refuse(req decision.Request, reason string) decision.Decision
}

// PulledPicker chooses the manifest that runs among the digests a runtime
// records for an image pulled through a tag (decision.Engine.PickPulled).
type PulledPicker interface {
	PickPulled(ctx context.Context, tag string, candidates []string) (string, error)
}

var (
	_ Decider      = (*decision.Engine)(nil)
	_ PulledPicker = (*decision.Engine)(nil)
)

// The NRI events the plugin handles.
var (
	_ stub.ConfigureInterface       = (*Plugin)(nil)
	_ stub.SynchronizeInterface     = (*Plugin)(nil)
	_ stub.RunPodInterface          = (*Plugin)(nil)
	_ stub.CreateContainerInterface = (*Plugin)(nil)
)

// Resolver looks images up in the runtime's own image store, for what the
// NRI request does not carry. It never asks a registry: a tag is only ever
// resolved to the digest the runtime actually pulled.
type Resolver interface {
	// ImageDigest returns the digest of an image the runtime has pulled.
	ImageDigest(ctx context.Context, name string) (string, error)
	// SandboxImage returns the image name and digest of a pod sandbox.
	SandboxImage(ctx context.Context, podID string) (name, digest string, err error)
}

// Plugin is the NRI plugin.
type Plugin struct {
	stub     stub.Stub
	decider  Decider
	resolver Resolver
	log      *slog.Logger

	deadline    time.Duration // as configured
	effDeadline atomic.Int64  // in force, after Configure learnt the runtime's timeout

	synced   chan struct{} // closed at the first Synchronize
	syncOnce sync.Once
	warmer   *Warmer
	gate     *Gate // nil without the runtime gate

	dlog       DecisionLogger // nil: no decision log
	generation func() uint64
	metrics    DecisionObserver // nil: none
	warnings   *Warnings
	runtime    atomic.Pointer[string] // "name version", from Configure

	inv        inventory
	auditMu    sync.Mutex // one audit at a time, so the last one's list stands
	unverified []runtimegate.Running

	stats Stats
}

// Stats counts decisions since start.
type Stats struct {
	Allowed   atomic.Int64
	Denied    atomic.Int64
	WouldDeny atomic.Int64
	Deadline  atomic.Int64
	// Unverified counts running containers found at (re)connection whose
	// images the policy would deny.
	Unverified atomic.Int64
}

type options struct {
	name, index, socket string
	deadline            time.Duration
	log                 *slog.Logger
	resolver            Resolver
	onClose             func()
	warmer              *Warmer
	gate                *Gate
	dlog                DecisionLogger
	generation          func() uint64
	metrics             DecisionObserver
	warnings            *Warnings
}

// Option configures a Plugin.
type Option func(*options) error

// WithPluginName sets the name the plugin registers under (default
// "sealgate"). containerd's required_plugins must name it.
func WithPluginName(n string) Option {
	return func(o *options) error {
		if n == "" {
			return errors.New("empty plugin name")
		}
		o.name = n
		return nil
	}
}

// WithPluginIndex sets the plugin's index (two digits, default "10"). It is
// ignored when the runtime launched the plugin and already set the index.
func WithPluginIndex(idx string) Option {
	return func(o *options) error {
		if len(idx) != 2 || idx[0] < '0' || idx[0] > '9' || idx[1] < '0' || idx[1] > '9' {
			return fmt.Errorf("plugin index %q: want two digits, e.g. 10", idx)
		}
		o.index = idx
		return nil
	}
}

// WithSocketPath sets the runtime's NRI socket (default /var/run/nri/nri.sock).
func WithSocketPath(p string) Option {
	return func(o *options) error {
		if p == "" {
			return errors.New("empty NRI socket path")
		}
		o.socket = p
		return nil
	}
}

// WithDeadline sets how long a decision may take before enforce mode denies.
// It must stay under the runtime's request timeout; if the runtime reports a
// shorter timeout, the plugin lowers its deadline to three quarters of it.
func WithDeadline(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("deadline %s: must be positive", d)
		}
		o.deadline = d
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil logger")
		}
		o.log = l
		return nil
	}
}

// WithResolver sets how image digests and sandbox images are found when the
// request does not carry them (the containerd client in production).
func WithResolver(r Resolver) Option {
	return func(o *options) error {
		if r == nil {
			return errors.New("nil resolver")
		}
		o.resolver = r
		return nil
	}
}

// WithWarmer sets the background verifier that Synchronize feeds (default:
// a new one). Share one between reconnects and the image-pull watcher.
func WithWarmer(w *Warmer) Option {
	return func(o *options) error {
		if w == nil {
			return errors.New("nil warmer")
		}
		o.warmer = w
		return nil
	}
}

// WithGate makes the plugin keep its decisions for the runtime gate, which
// refuses any container the plugin did not allow. Share one Gate between
// Warnings remembers the warnings given, so that a cause is said once,
// not again at every reconnection to the runtime: the composition root
// keeps one for all the plugins it makes.
type Warnings struct{ said sync.Map }

// first reports whether cause was not said before, and marks it said.
func (w *Warnings) first(cause string) bool {
	_, said := w.said.LoadOrStore(cause, true)
	return !said
}

// WithWarnings shares w between the plugins made with it.
func WithWarnings(w *Warnings) Option {
	return func(o *options) error {
		if w == nil {
			return errors.New("nil warnings")
		}
		o.warnings = w
		return nil
	}
}

// DecisionObserver counts decisions and their latency (metrics.Metrics);
// it must not block.
type DecisionObserver interface {
	ObserveDecision(d decision.Decision, took time.Duration)
}

// WithMetrics reports every decision to m.
func WithMetrics(m DecisionObserver) Option {
	return func(o *options) error {
		if m == nil {
			return errors.New("nil metrics")
		}
		o.metrics = m
		return nil
	}
}

// DecisionLogger takes every decision the plugin makes. Add must not
// block: decisionlog.Writer queues and counts what it cannot keep.
type DecisionLogger interface {
	Add(decisionlog.Entry)
}

// WithDecisionLog records every decision in l, with gen giving the trust
// generation in force (nil: none recorded).
func WithDecisionLog(l DecisionLogger, gen func() uint64) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil decision log")
		}
		o.dlog, o.generation = l, gen
		return nil
	}
}

// reconnects.
func WithGate(g *Gate) Option {
	return func(o *options) error {
		if g == nil {
			return errors.New("nil gate")
		}
		o.gate = g
		return nil
	}
}

// WithOnClose sets a function called when the runtime closes the connection.
func WithOnClose(f func()) Option {
	return func(o *options) error {
		o.onClose = f
		return nil
	}
}

// New builds a plugin that asks d about every image.
func New(d Decider, opts ...Option) (*Plugin, error) {
	if d == nil {
		return nil, errors.New("new plugin: nil decider")
	}
	o := options{name: DefaultName, index: DefaultIndex, deadline: DefaultDeadline, log: slog.Default()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("new plugin: %w", err)
		}
	}
	p := &Plugin{decider: d, resolver: o.resolver, log: o.log, deadline: o.deadline, synced: make(chan struct{}), warmer: o.warmer, gate: o.gate,
		dlog: o.dlog, generation: o.generation, metrics: o.metrics, warnings: o.warnings}
	if p.warnings == nil {
		p.warnings = &Warnings{}
	}
	if p.warmer == nil {
		p.warmer = NewWarmer(d, o.log)
	}
	p.effDeadline.Store(int64(o.deadline))

	stubOpts := []stub.Option{
		stub.WithLogger(nriLogger{o.log}),
		// Fail the request and stay registered on a timeout: otherwise
		// one slow answer makes the runtime drop the plugin and let every
		// later container through unchecked.
		stub.WithFailurePolicy(&api.FailurePolicy{FailRequest: true, KeepConnected: true}),
	}
	// A runtime that launched the plugin from its plugin folder passes the
	// name and index in the environment; setting them again would clash.
	if os.Getenv(api.PluginNameEnvVar) == "" {
		stubOpts = append(stubOpts, stub.WithPluginName(o.name))
	}
	if os.Getenv(api.PluginIdxEnvVar) == "" {
		stubOpts = append(stubOpts, stub.WithPluginIdx(o.index))
	}
	if o.socket != "" {
		stubOpts = append(stubOpts, stub.WithSocketPath(o.socket))
	}
	if o.onClose != nil || o.gate != nil {
		stubOpts = append(stubOpts, stub.WithOnClose(func() {
			o.gate.setConnected(false, "", "", 0)
			if o.onClose != nil {
				o.onClose()
			}
		}))
	}
	s, err := stub.New(p, stubOpts...)
	if err != nil {
		return nil, fmt.Errorf("new plugin: %w", err)
	}
	p.stub = s
	if p.resolver == nil && p.warnings.first("no containerd connection") {
		p.log.Warn("no containerd connection: pod sandbox images cannot be checked and containers whose request carries no image digest are denied")
	}
	return p, nil
}

// Run connects to the runtime and serves until ctx ends or the runtime
// closes the connection.
func (p *Plugin) Run(ctx context.Context) error {
	return p.stub.Run(ctx)
}

// Stop disconnects from the runtime.
func (p *Plugin) Stop() { p.stub.Stop() }

// Synchronized is closed once the runtime has synchronized with the plugin,
// that is, once the plugin is registered and sees every new container.
func (p *Plugin) Synchronized() <-chan struct{} { return p.synced }

// Stats returns the decision counters.
func (p *Plugin) Stats() *Stats { return &p.stats }

// Deadline returns the deadline in force.
func (p *Plugin) Deadline() time.Duration { return time.Duration(p.effDeadline.Load()) }

// Configure learns the runtime's request timeout and keeps the plugin's own
// deadline under it.
func (p *Plugin) Configure(_ context.Context, _, runtime, version string) (api.EventMask, error) {
	d := p.deadline
	if rt := p.stub.RequestTimeout(); rt > 0 && d >= rt*3/4 {
		d = rt * 3 / 4
		if p.warnings.first("deadline lowered " + d.String()) {
			p.log.Warn("deadline lowered under the runtime's request timeout", "configured", p.deadline.String(), "runtimeTimeout", rt.String(), "deadline", d.String())
		}
	}
	p.effDeadline.Store(int64(d))
	rt := runtime + " " + version
	p.runtime.Store(&rt)
	if ra, ok := p.resolver.(RuntimeAware); ok {
		if err := ra.UseRuntime(runtime, version); err != nil && p.warnings.first("no image store "+runtime) {
			p.log.Warn("pod sandbox images cannot be checked and containers whose request carries no image digest are denied", "runtime", runtime, "reason", err.Error())
		}
	}
	p.gate.setConnected(true, runtime, version, d)
	p.log.Info("connected to runtime", "runtime", runtime, "version", version, "deadline", d.String())
	return 0, nil
}

// Synchronize is told about the pods and containers that already exist; it
// verifies their images in the background, so that the next container of
// any of them is a cache hit.
func (p *Plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.log.Info("synchronized with runtime", "pods", len(pods), "containers", len(ctrs))
	ns := make(map[string]string, len(pods))
	for _, pod := range pods {
		ns[pod.GetId()] = pod.GetNamespace()
	}
	p.inv.reset(pods, ctrs)
	go p.auditRunning(pods, ctrs, "existing container")
	p.syncOnce.Do(func() { close(p.synced) })
	return nil, nil
}

// RunPodSandbox checks the pod's sandbox (pause) image.
func (p *Plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	ctx, cancel := context.WithTimeout(ctx, p.Deadline())
	defer cancel()
	if p.resolver == nil {
		return nil
	}
	name, digest, err := p.resolver.SandboxImage(ctx, pod.GetId())
	if err != nil {
		d := p.decider.Refuse(decision.Request{Namespace: pod.GetNamespace()}, fmt.Sprintf("cannot find the sandbox image in the runtime's image store: %v", err))
		d.Image = "sandbox of pod " + pod.GetNamespace() + "/" + pod.GetName()
		p.record(d, pod, "sandbox")
		return d.Err()
	}
	return p.decide(ctx, decision.Request{Image: name, Digest: digest, Namespace: pod.GetNamespace()}, pod, "sandbox")
}

// CreateContainer decides whether the container's image may run, and keeps
// the decision for the runtime gate.
func (p *Plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	start := time.Now()
	req := containerRequest(pod, ctr)
	d, ok := decision.Decision{}, false
	if req.Image != "" && req.Digest != "" {
		// Almost always a cached verdict: decided here, synchronously.
		d, ok = p.decider.Quick(req)
	}
	if !ok {
		dctx, cancel := context.WithTimeout(ctx, p.Deadline())
		d = p.decideContainer(dctx, req, ctr)
		cancel()
	}
	p.record(d, pod, ctr.GetName())
	if p.metrics != nil {
		p.metrics.ObserveDecision(d, time.Since(start))
	}
	p.gate.record(ctr.GetId(), specImage(ctr), ctr.GetPodSandboxId(), d)
	err := d.Err()
	if err == nil {
		p.inv.add(pod, ctr)
	}
	return nil, nil, err
}

// specImage is the image name the runtime writes into the container's OCI
// spec, which the runtime gate compares with the one decided on:
// containerd's CRI annotation, or CRI-O's.
func specImage(ctr *api.Container) string {
	if n := ctr.GetAnnotations()[imageNameAnnotation]; n != "" {
		return n
	}
	return ctr.GetAnnotations()[crioImageAnnotation]
}

// containerRequest is what the runtime says about the container's image.
func containerRequest(pod *api.PodSandbox, ctr *api.Container) decision.Request {
	req := decision.Request{Namespace: pod.GetNamespace()}
	if img := ctr.GetImage(); img != nil {
		req.Image, req.Digest = img.GetName(), img.GetDigest()
	}
	// Rules match the name the container was created from, which the CRI
	// puts in this annotation; NRI's Image.Name is one of the image's names
	// (the first, sorted), not necessarily that one.
	if n := ctr.GetAnnotations()[imageNameAnnotation]; n != "" {
		req.Image = n
	}
	return req
}

// decideContainer completes req (an older runtime sends no digest) and
// decides under ctx's deadline.
func (p *Plugin) decideContainer(ctx context.Context, req decision.Request, ctr *api.Container) decision.Decision {
	if ci, ok := p.resolver.(ContainerImager); ok && req.Image == "" {
		// CRI-O: no image in the request; its annotations and image
		// store say what runs.
		of, err := ci.ContainerImage(ctx, ctr.GetAnnotations())
		if err == nil && of.Digest == "" {
			// Several digests recorded for the name: the registry says
			// which one is the manifest that runs, or none is taken.
			if pp, ok := p.decider.(PulledPicker); ok {
				of.Digest, err = pp.PickPulled(ctx, of.Tag, of.Candidates)
			} else {
				err = fmt.Errorf("the runtime records several digests for %s: %v", of.Image, of.Candidates)
			}
		}
		switch {
		case errors.Is(err, errNoContainerImage):
		case err != nil:
			d := p.decider.Refuse(req, fmt.Sprintf("cannot tell which image this container runs: %v", err))
			d.Image = "container " + ctr.GetName()
			return d
		default:
			req.Image, req.Digest, req.Tag = of.Image, of.Digest, of.Tag
		}
	}
	if req.Digest == "" && req.Image != "" && p.resolver != nil {
		// An older runtime: ask its image store which digest it pulled.
		digest, err := p.resolver.ImageDigest(ctx, req.Image)
		if err != nil {
			return p.decider.Refuse(req, fmt.Sprintf("the runtime sent no image digest and its image store has none for %s: %v", req.Image, err))
		}
		req.Digest = digest
	}
	if req.Image == "" {
		d := p.decider.Refuse(req, "the runtime ("+p.runtimeName()+") sent no image for this container and sealgate has no connection to its image store (--containerd-address on containerd, --crio-address on CRI-O)")
		d.Image = "container " + ctr.GetName()
		return d
	}
	return p.decideWithin(ctx, req)
}

// runtimeName is the runtime as Configure named it.
func (p *Plugin) runtimeName() string {
	if rt := p.runtime.Load(); rt != nil {
		return *rt
	}
	return "runtime not known yet"
}

// decide runs one decision under the deadline and logs it.
func (p *Plugin) decide(ctx context.Context, req decision.Request, pod *api.PodSandbox, what string) error {
	d, ok := p.decider.Quick(req)
	if !ok {
		d = p.decideWithin(ctx, req)
	}
	p.record(d, pod, what)
	return d.Err()
}

// decideWithin runs one decision, or makes the deadline's when ctx ends
// first.
func (p *Plugin) decideWithin(ctx context.Context, req decision.Request) decision.Decision {
	done := make(chan decision.Decision, 1)
	go func() { done <- p.decider.Decide(ctx, req) }()
	select {
	case d := <-done:
		return d
	case <-ctx.Done():
		p.stats.Deadline.Add(1)
		// The engine did not answer in time: it refuses, under the mode
		// of the rule the image matches (matching needs no I/O).
		return p.decider.Refuse(req, fmt.Sprintf("no decision within the %s deadline (registry slow or unreachable)", p.Deadline()))
	}
}

func (p *Plugin) record(d decision.Decision, pod *api.PodSandbox, what string) {
	if p.dlog != nil {
		p.logDecision(d, pod, what)
	}
	if d.Allowed && !d.WouldDeny && d.Source != decision.SourcePolicy {
		// The common case: counted, and logged only at debug level, with
		// the attributes built only then.
		p.stats.Allowed.Add(1)
		if p.log.Enabled(context.Background(), slog.LevelDebug) {
			p.log.Debug("allowed", p.attrs(d, pod, what)...)
		}
		return
	}
	attrs := p.attrs(d, pod, what)
	switch {
	case !d.Allowed:
		p.stats.Denied.Add(1)
		p.log.Warn("denied", append(attrs, "reasons", d.Reasons)...)
	case d.WouldDeny:
		p.stats.WouldDeny.Add(1)
		p.stats.Allowed.Add(1)
		level := slog.LevelWarn
		if d.Mode == string(policy.ModeAudit) {
			level = slog.LevelInfo
		}
		p.log.Log(context.Background(), level, "would deny in enforce mode; allowed by "+d.Mode+" mode", append(attrs, "reasons", d.Reasons)...)
	case d.Source == decision.SourcePolicy:
		p.stats.Allowed.Add(1)
		p.log.Info("allowed without signatures (audited)", append(attrs, "reasons", d.Reasons)...)
	}
}

// logDecision queues d for the decision log: a copy of what the decision
// already holds, without waiting.
func (p *Plugin) logDecision(d decision.Decision, pod *api.PodSandbox, what string) {
	e := decisionlog.Entry{Time: time.Now(), Namespace: pod.GetNamespace(), Pod: pod.GetName(), Container: what,
		Image: d.Image, Digest: d.Digest, Rule: d.Rule, Mode: d.Mode, Verdict: "allow", Reasons: d.Reasons, Source: d.Source, SatisfiedBy: d.SatisfiedBy}
	switch {
	case !d.Allowed:
		e.Verdict = "deny"
	case d.WouldDeny:
		e.Verdict = "would-deny"
	}
	if rt := p.runtime.Load(); rt != nil {
		e.Runtime = *rt
	}
	if p.generation != nil {
		e.Generation = p.generation()
	}
	p.dlog.Add(e)
}

func (p *Plugin) attrs(d decision.Decision, pod *api.PodSandbox, what string) []any {
	return []any{"image", d.Image, "digest", d.Digest, "pod", pod.GetNamespace() + "/" + pod.GetName(),
		"container", what, "rule", d.Rule, "mode", d.Mode, "source", d.Source}
}

// nriLogger sends the NRI stub's own messages to slog.
type nriLogger struct{ l *slog.Logger }

func (n nriLogger) Debugf(ctx context.Context, f string, a ...any) {
	n.l.DebugContext(ctx, "nri: "+fmt.Sprintf(f, a...))
}
func (n nriLogger) Infof(ctx context.Context, f string, a ...any) {
	n.l.InfoContext(ctx, "nri: "+fmt.Sprintf(f, a...))
}
func (n nriLogger) Warnf(ctx context.Context, f string, a ...any) {
	n.l.WarnContext(ctx, "nri: "+fmt.Sprintf(f, a...))
}
func (n nriLogger) Errorf(ctx context.Context, f string, a ...any) {
	n.l.ErrorContext(ctx, "nri: "+fmt.Sprintf(f, a...))
}
