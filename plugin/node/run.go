package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/decisionlog"
	"github.com/sealgate/sealgate/plugin/metrics"
	"github.com/sealgate/sealgate/runtimegate"
)

// ErrHandedOverConnectionClosed: the runtime launched the process with one
// connection and closed it; it starts its plugins again when it restarts.
var ErrHandedOverConnectionClosed = errors.New("the runtime closed the connection it launched the plugin with")

// reconnectEvery is how often a disconnected plugin dials the runtime
// again. Dialling a unix socket that is not there costs nothing, and every
// moment without the plugin is a moment the node refuses containers.
const reconnectEvery = 200 * time.Millisecond

// pullRetry is the pause before the pull watcher subscribes again.
const pullRetry = 2 * time.Second

// Run serves until ctx is done: the runtime gate (before the plugin
// connects, so that containers created meanwhile are refused with a reason,
// not left to a timeout), the watcher that verifies pulled images before
// any container of them is created, and the NRI connection, dialled again
// whenever the runtime restarts, keeping the engine and its verdicts. It
// returns nil when ctx ends; an error wrapping ErrConfig when the
// configuration cannot work; ErrHandedOverConnectionClosed when the
// runtime closed the one connection it launched the process with.
func (n *Node) Run(ctx context.Context) error {
	cfg, log := n.cfg, n.log
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log.Info("policy loaded", n.snapAttrs(n.cur.Load())...)
	decider := live{n}
	warmer := plugin.NewWarmer(decider, log)
	opts := []plugin.Option{
		plugin.WithLogger(log), plugin.WithWarnings(&plugin.Warnings{}), plugin.WithSocketPath(cfg.NRISocket), plugin.WithPluginName(cfg.PluginName),
		plugin.WithPluginIndex(cfg.PluginIndex), plugin.WithDeadline(cfg.Deadline), plugin.WithWarmer(warmer),
	}
	var resolver plugin.Resolver
	var pulls sync.WaitGroup // containerd's pull watcher, started once the runtime is known
	tasks := make(chan error, 5)
	running := 0
	if path := cfg.decisionLogPath(); path != "" {
		w, err := decisionlog.Open(path)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		running++
		go func() { tasks <- w.Run(ctx) }()
		opts = append(opts, plugin.WithDecisionLog(w, n.generation))
		log.Info("decision log", "path", path)
	}
	var ctrd *plugin.ContainerdResolver
	var runtimeResolvers [2]plugin.Resolver
	if cfg.ContainerdAddress != "" {
		r, err := plugin.NewContainerdResolver(cfg.ContainerdAddress, cfg.ContainerdNamespace)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		defer r.Close()
		ctrd, runtimeResolvers[0] = r, r
	}
	var crio *plugin.CRIOResolver
	if cfg.CRIOAddress != "" {
		r, err := plugin.NewCRIOResolver(cfg.CRIOAddress)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		defer r.Close()
		crio, runtimeResolvers[1] = r, r
	}
	if runtimeResolvers[0] != nil || runtimeResolvers[1] != nil {
		rr := plugin.NewRuntimeResolver(runtimeResolvers[0], runtimeResolvers[1])
		resolver = rr
		opts = append(opts, plugin.WithResolver(rr))
		// Images pulled ahead are verified before their first container:
		// containerd's pull events, or CRI-O's image list (the CRI has no
		// pull events), once the runtime says which it is; no retry loop
		// against a runtime the node does not run.
		var once sync.Once
		rr.OnUse(func(runtime string) {
			switch {
			case runtime == "containerd" && ctrd != nil:
				once.Do(func() {
					pulls.Add(1)
					go func() { defer pulls.Done(); _ = n.watchPulls(ctx, ctrd, warmer) }()
				})
			case runtime == "cri-o" && crio != nil:
				once.Do(func() {
					pulls.Add(1)
					go func() { defer pulls.Done(); n.pollImages(ctx, crio, warmer) }()
				})
			}
		})
	}
	var gate *plugin.Gate
	if cfg.gateEnabled() {
		gate = plugin.NewGate(decider, resolver, cfg.Deadline, log)
		setTrust := func(s *snapshot) {
			gate.SetReloads(n.Reloads())
			if s.opened != nil {
				gate.SetTrust(false, s.opened.Dir, s.opened.Generation, s.opened.Record.Digest)
			} else {
				gate.SetTrust(true, "", 0, "")
			}
		}
		setTrust(n.cur.Load())
		n.onSwap = setTrust
		gate.OnReload(n.Reload)
		srv, err := runtimegate.Listen(cfg.GateSocket, gate, func(err error) { log.Warn(err.Error()) })
		if err != nil {
			return err
		}
		gate.LogEscapes(cfg.GateSocket)
		running++
		go func() {
			err := srv.Serve(ctx)
			if err != nil {
				log.Error("runtime gate stopped", "error", err)
			}
			tasks <- err
		}()
		log.Info("runtime gate listening", "socket", cfg.GateSocket)
		opts = append(opts, plugin.WithGate(gate), plugin.WithOnClose(func() { gate.LogEscapes(cfg.GateSocket) }))
	}
	if addr := cfg.metricsAddress(); addr != "" {
		state := func() metrics.State { return n.state(gate) }
		m := metrics.New(cfg.Version, state)
		n.metrics.Store(m)
		opts = append(opts, plugin.WithMetrics(m))
		running++
		go func() {
			err := metrics.Serve(ctx, addr, m.Handler(state, !cfg.InsecureNoTPM))
			if err != nil {
				log.Error("metrics endpoint stopped", "error", err)
			}
			tasks <- err
		}()
		log.Info("metrics endpoint listening", "address", addr)
	}
	running++
	go func() { tasks <- n.watch(ctx) }()
	err := n.connect(ctx, opts)
	cancel()
	for range running {
		<-tasks
	}
	pulls.Wait()
	return err
}

// watchPulls verifies every image containerd pulls, so that its first
// container finds the verdict; the subscription is renewed when it drops.
func (n *Node) watchPulls(ctx context.Context, r *plugin.ContainerdResolver, warmer *plugin.Warmer) error {
	for ctx.Err() == nil {
		err := r.WatchPulls(ctx, func(name, digest string) {
			warmer.Warm(decision.Request{Image: name, Digest: digest}, "image pulled")
		})
		if ctx.Err() != nil {
			break
		}
		n.log.Warn("watching containerd's image events stopped; retrying", "error", err, "in", pullRetry.String())
		select {
		case <-ctx.Done():
		case <-time.After(pullRetry):
		}
	}
	return nil
}

// pollImages verifies the images CRI-O holds, each new one once, every
// cfg.ImagePoll: the CRI reports no pulls, so its image list is read.
func (n *Node) pollImages(ctx context.Context, r *plugin.CRIOResolver, warmer *plugin.Warmer) {
	every := n.cfg.ImagePoll
	if every <= 0 {
		every = DefaultImagePoll
	}
	seen := map[string]bool{}
	warned := false
	for {
		imgs, err := r.Images(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !warned:
			n.log.Warn("listing CRI-O's images failed; retrying", "error", err.Error(), "every", every.String())
			warned = true
		case err == nil:
			warned = false
			if len(seen) > maxSeenImages {
				seen = map[string]bool{}
			}
			for _, img := range imgs {
				key := img.ID + "\x00" + img.Image + "\x00" + img.Digest
				if seen[key] {
					continue
				}
				seen[key] = true
				warmer.Warm(decision.Request{Image: img.Image, Digest: img.Digest, Tag: img.Tag}, "image pulled")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// maxSeenImages bounds the images pollImages remembers; past it, it starts
// again (the verdicts are cached: deciding again is cheap).
const maxSeenImages = 8192

// connect keeps the plugin connected: the runtime closes the connection
// when it restarts, and the plugin dials again until it is back.
func (n *Node) connect(ctx context.Context, opts []plugin.Option) error {
	log := n.log
	warned := false
	for {
		p, err := plugin.New(live{n}, opts...)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		n.plugin.Store(p)
		started := time.Now()
		err = p.Run(ctx)
		if ctx.Err() != nil {
			log.Info("stopping", "allowed", p.Stats().Allowed.Load(), "denied", p.Stats().Denied.Load())
			return nil
		}
		if n.cfg.LaunchedByRuntime {
			return fmt.Errorf("%w: %w", ErrHandedOverConnectionClosed, err)
		}
		// One warning per lost connection, not one per attempt.
		if time.Since(started) > 2*reconnectEvery || !warned {
			log.Warn("disconnected from the runtime; reconnecting", "error", err, "every", reconnectEvery.String())
			warned = true
		} else {
			log.Debug("runtime not back yet", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(reconnectEvery):
		}
	}
}

// generation is the trust generation in force, for the decision log.
func (n *Node) generation() uint64 {
	if o := n.cur.Load().opened; o != nil {
		return o.Generation
	}
	return 0
}

// decisionLogPath is where the decision log goes; empty: none.
func (c Config) decisionLogPath() string {
	switch c.DecisionLog {
	case "none":
		return ""
	case "":
		return filepath.Join(c.StateDir, "decisions.log")
	}
	return c.DecisionLog
}

// state is what the metrics endpoint reports: from the runtime gate when
// there is one (it tracks the connection, the trust in force and the
// running containers the policy would deny), else from the snapshot.
func (n *Node) state(gate *plugin.Gate) metrics.State {
	var s metrics.State
	snap := n.cur.Load()
	if snap.opened != nil {
		s.Sealed, s.TrustGeneration, s.TrustDigest = true, snap.opened.Generation, snap.opened.Record.Digest
	}
	s.ReloadsAccepted, s.ReloadsRefused = n.Reloads()
	s.CachedVerdicts = snap.engine.CachedVerdicts()
	s.CacheHits, s.CacheMisses = snap.engine.CacheCounts()
	s.TPMOperations = n.tpmOps.snapshot()
	if snap.opened != nil {
		st := snap.stats
		s.CacheRejected = map[string]int{"bad-mac": st.BadMAC, "old-generation": st.OldGeneration, "newer-generation": st.NewerGeneration, "malformed": st.Malformed}
	}
	if p := n.plugin.Load(); p != nil {
		s.UnverifiedContainers = p.Unverified()
		s.Unverified = int64(len(s.UnverifiedContainers))
	}
	if gate != nil {
		st := gate.Status()
		s.Connected = st.Connected
		s.GateChecks, s.GateRefusals = st.Checks, st.Refusals
	}
	return s
}

// metricsAddress is where the metrics endpoint listens; empty: nowhere.
func (c Config) metricsAddress() string {
	switch c.MetricsAddress {
	case "none":
		return ""
	case "":
		if !c.gateEnabled() {
			return ""
		}
		return filepath.Join(filepath.Dir(c.GateSocket), "metrics.sock")
	}
	return c.MetricsAddress
}
