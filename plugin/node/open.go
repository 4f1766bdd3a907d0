package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/metrics"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/tpm"
)

// cacheKeyPurpose derives the verdict cache's MAC key from the sealed key.
const cacheKeyPurpose = "sealgate verdict cache v1"

// Node is an opened node: the trust store checked against the TPM, the
// policy parsed from the checked bytes, the persisted verdicts, and the
// decision engine built from them. A re-seal swaps all of these at once
// (Reload) while the node keeps running.
type Node struct {
	cfg Config
	log *slog.Logger
	cur atomic.Pointer[snapshot]

	reloadMu sync.Mutex
	accepted atomic.Int64
	refused  atomic.Int64
	onSwap   func(*snapshot)                 // set by Run before any reload: tells the runtime gate
	metrics  atomic.Pointer[metrics.Metrics] // set by Run; registry requests go to it
	plugin   atomic.Pointer[plugin.Plugin]   // the one connected now (Run); re-evaluates after a reload
	tpmOps   tpmOps                          // TPM operations, for the metrics
	requests atomic.Int64                    // registry requests made, here or by the verifier
	verifier *os.File                        // the verifier's executable, held from Open; nil without one
}

// snapshot is what one sealed generation decides with.
type snapshot struct {
	engine  *decision.Engine
	checker decision.Checker
	opened  *trust.Opened     // nil without a TPM
	store   *cache.Persistent // nil without a TPM
	offline string            // why offline verdicts are off, or ""
	stats   cache.LoadStats   // what loading the verdicts found
	closeFn func()
}

// Open builds a node from cfg. With a TPM it opens it, checks the trust
// store against its seal (trust.Open reads the policy and exactly the files
// it names, once), parses the policy from those bytes, opens the verdict
// cache under a key derived from the sealed key and checks the TPM clock;
// any mismatch is an error naming what differs: a node must not decide with
// a trust store nobody sealed. Errors that configuration fixes wrap
// ErrConfig.
func Open(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger}
	if cfg.Verifier != "" {
		// Held open: the verifier started later is this release's, even
		// after an upgrade replaced the file before the daemon restarted.
		if n.verifier, err = os.Open(cfg.Verifier); err != nil {
			return nil, fmt.Errorf("%w: the verifier: %w", ErrConfig, err)
		}
	}
	if cfg.InsecureNoTPM && cfg.Access == Daemon {
		n.log.Warn("RUNNING WITHOUT A TPM (--insecure-no-tpm): the trust store on disk is trusted as it is (anyone who can write it can add a key or relax the policy), and verdicts are not persisted, so nothing serves while the registry is unreachable after a restart")
	}
	c, err := n.check()
	if err != nil {
		n.closeVerifier()
		return nil, err
	}
	snap, err := n.commit(c, nil)
	if err != nil {
		n.closeVerifier()
		return nil, err
	}
	n.cur.Store(snap)
	if err := n.measure(snap); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// measure has the daemon's TPM show the trust store it now decides with
// (trust.Opened.Measure), in the measurement PCR and the measurement log
// in the state folder, for remote attestation. It does nothing for other
// uses of a node and without a TPM.
func (n *Node) measure(snap *snapshot) error {
	if n.cfg.Access != Daemon || snap.opened == nil {
		return nil
	}
	t, err := n.openTPM()
	if err != nil {
		return err
	}
	defer t.Close()
	res, err := snap.opened.Measure(t, filepath.Join(n.cfg.StateDir, trust.MeasurementLogName))
	if err != nil {
		return err
	}
	if res.Restarted != "" {
		n.log.Info("measurement log started", "why", res.Restarted, "pcr", snap.opened.Record.MeasurePCR)
	}
	if res.Extended {
		n.log.Info("trust store measured into the TPM", "pcr", snap.opened.Record.MeasurePCR, "digest", snap.opened.Record.Digest, "generation", snap.opened.Generation)
	}
	return nil
}

// Engine decides with the snapshot in force.
func (n *Node) Engine() *decision.Engine { return n.cur.Load().engine }

// Checker is what checks the images no verdict decides under the snapshot
// in force: this process's, or the client of the verifier process.
func (n *Node) Checker() decision.Checker { return n.cur.Load().checker }

// RequestCount is how many registry requests the node made, in this
// process or in the verifier's.
func (n *Node) RequestCount() int64 { return n.requests.Load() }

// Trust is the opened trust store in force; nil without a TPM.
func (n *Node) Trust() *trust.Opened { return n.cur.Load().opened }

// Verdicts is the persisted verdict store in force; nil without a TPM.
func (n *Node) Verdicts() *cache.Persistent { return n.cur.Load().store }

// LoadStats says what loading the persisted verdicts found.
func (n *Node) LoadStats() cache.LoadStats { return n.cur.Load().stats }

// OfflineUnavailable says why offline verdicts are off ("" when they are
// not).
func (n *Node) OfflineUnavailable() string { return n.cur.Load().offline }

// Close stops the clock mark, writes it one last time and closes the
// verdict store. It is safe to call more than once.
func (n *Node) Close() {
	if s := n.cur.Load(); s != nil {
		s.closeFn()
		if c, ok := s.checker.(io.Closer); ok {
			_ = c.Close() // the verifier process, if one runs
		}
	}
	n.closeVerifier()
}

// closeVerifier lets go of the verifier's executable.
func (n *Node) closeVerifier() {
	if n.verifier != nil {
		_ = n.verifier.Close()
	}
}

// checked is a trust store that passed the TPM check, with its policy
// parsed from the checked bytes: everything a snapshot needs that can fail
// without touching the snapshot in force.
type checked struct {
	pol    *policy.Policy
	opened *trust.Opened
	clk    tpm.Clock
}

// check opens the TPM and the trust store and parses the policy. It
// changes nothing.
func (n *Node) check() (*checked, error) {
	cfg := n.cfg
	if cfg.InsecureNoTPM {
		path := cfg.PolicyFile
		if path == "" {
			path = filepath.Join(cfg.TrustDir, trust.PolicyName)
		}
		load := func() (*policy.Policy, error) { return policy.Load(path) }
		if cfg.PolicyBytes != nil {
			load = func() (*policy.Policy, error) { return policy.Parse(path, cfg.PolicyBytes) }
		}
		pol, err := load()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return &checked{pol: pol}, nil
	}
	t, err := n.openTPM()
	if err != nil {
		if errors.Is(err, tpm.ErrNoTPM) {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err) // names the --insecure-no-tpm escape
		}
		return nil, err
	}
	defer t.Close()
	opened, err := trust.Open(cfg.TrustDir, t)
	if err != nil {
		return nil, err
	}
	pol, err := sealedPolicy(opened)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	clk, err := t.Clock()
	if err != nil {
		return nil, fmt.Errorf("read the TPM clock: %w", err)
	}
	return &checked{pol: pol, opened: opened, clk: clk}, nil
}

// commit builds the snapshot of c. The verdict store is one folder that
// one process holds at a time, so prev's store is closed (it keeps serving
// from memory) before c's is opened.
func (n *Node) commit(c *checked, prev *snapshot) (*snapshot, error) {
	snap := &snapshot{opened: c.opened, closeFn: func() {}}
	opts := []decision.Option{decision.WithCache(cache.NewMemory(n.cfg.CacheSize)), decision.WithRevalidateAfter(n.cfg.RevalidateAfter),
		decision.WithDenialMemory(max(n.cfg.DenialMemory, 0))}
	if c.opened != nil {
		if prev != nil {
			prev.closeFn()
		}
		anchored, err := n.anchor(snap, c)
		if err != nil {
			return nil, err
		}
		opts = append(opts, anchored...)
	}
	checker, err := n.checker(c.pol)
	if err != nil {
		snap.closeFn()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	engine, err := decision.New(c.pol, checker, opts...)
	if err != nil {
		snap.closeFn()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	snap.engine, snap.checker = engine, checker
	return snap, nil
}

// anchor opens snap's verdict cache under the key sealed with c and checks
// the TPM clock. It returns the engine options that come from the TPM.
func (n *Node) anchor(snap *snapshot, c *checked) ([]decision.Option, error) {
	cfg, log, opened, clk := n.cfg, n.log, c.opened, c.clk
	// The TPM is read once; from here its clock is extrapolated with the
	// process's monotonic clock, which the host cannot set back either, so
	// deciding never needs the TPM.
	base, started := clk.Clock, time.Now()
	mono := func() time.Duration { return base + time.Since(started) }
	cacheOpts := []cache.PersistOption{cache.WithFlushErrorHandler(func(err error) { log.Error("persisting verdicts failed", "error", err) })}
	if cfg.Access == Inspect {
		cacheOpts = append(cacheOpts, cache.WithReadOnly())
	}
	store, stats, err := cache.OpenPersistent(cfg.StateDir, opened.DeriveKey(cacheKeyPurpose), opened.Generation, cacheOpts...)
	if err != nil {
		return nil, err
	}
	snap.store, snap.stats = store, stats
	snap.closeFn = sync.OnceFunc(func() { _ = store.Close() })
	markKey := opened.DeriveKey(clockMarkPurpose)
	opts := []decision.Option{decision.WithOfflineStore(store), decision.WithMonotonicClock(mono)}
	if cfg.Access != Daemon {
		why := clockUnusable(cfg.StateDir, markKey, opened.Generation, clk, store)
		if _, hasMark, _ := cache.ReadClockMark(cfg.StateDir, markKey, opened.Generation); why == "" && !hasMark && store.Len() > 0 {
			why = "the verdicts have no clock mark (the daemon purges them when it starts)"
		}
		if why != "" {
			snap.offline = why
			opts = append(opts, decision.WithOfflineUnavailable(why))
		}
		return opts, nil
	}
	log.Info("trust store verified against the TPM", "dir", cfg.TrustDir, "generation", opened.Generation, "digest", opened.Record.Digest, "files", len(opened.Record.Files))
	log.Info("verdict cache loaded", "dir", cfg.StateDir, "loaded", stats.Loaded, "badMAC", stats.BadMAC, "oldGeneration", stats.OldGeneration,
		"newerGeneration", stats.NewerGeneration, "malformed", stats.Malformed)
	if why := checkClock(cfg.StateDir, markKey, opened.Generation, clk, store); why != "" {
		log.Warn("OFFLINE VERDICTS ARE OFF: "+why+"; images are decided only while their signatures can be fetched", "tpmClock", clk.Clock.String())
		snap.offline = why
		opts = append(opts, decision.WithOfflineUnavailable(why))
	}
	// The mark follows the clock while the daemon runs, so that a clock
	// that goes back by less than the daemon's uptime is caught too.
	stopMark := make(chan struct{})
	markDone := make(chan struct{})
	go func() {
		defer close(markDone)
		tick := time.NewTicker(clockMarkEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopMark:
				return
			case <-tick.C:
				raiseClockMark(cfg.StateDir, markKey, opened.Generation, mono(), log)
			}
		}
	}()
	snap.closeFn = sync.OnceFunc(func() {
		close(stopMark)
		<-markDone
		raiseClockMark(cfg.StateDir, markKey, opened.Generation, mono(), log)
		if err := store.Close(); err != nil {
			log.Error("closing the verdict cache", "error", err)
		}
	})
	return opts, nil
}

// sealedPolicy parses the trust store's policy, and every file it names,
// from the content that was checked against the TPM: nothing is read from
// disk again, so a file swapped after the check is never used, and a file
// the seal does not cover cannot be named.
func sealedPolicy(opened *trust.Opened) (*policy.Policy, error) {
	data, err := opened.ReadFile(trust.PolicyName)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	read := func(path string, limit int64) ([]byte, error) {
		b, err := opened.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if int64(len(b)) > limit {
			return nil, fmt.Errorf("larger than %d bytes", limit)
		}
		return b, nil
	}
	pol, err := policy.Parse(filepath.Join(opened.Dir, trust.PolicyName), data, policy.WithFileReader(read))
	if err != nil {
		return nil, err
	}
	// Everything that decides is sealed; a file the policy names outside
	// the trust store could not have been read above, but say it plainly.
	for _, f := range pol.Files() {
		if !within(opened.Dir, f) {
			return nil, fmt.Errorf("the policy names %s, which is outside the sealed trust store %s; move it into the trust store and re-seal", f, opened.Dir)
		}
	}
	return pol, nil
}

// within reports whether file lies inside dir.
func within(dir, file string) bool {
	d, err1 := filepath.Abs(dir)
	f, err2 := filepath.Abs(file)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, f)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// observeRequest passes a registry request to the metrics, once Run has
// made them.
func (n *Node) observeRequest(host string, took time.Duration, err error) {
	n.requests.Add(1)
	if m := n.metrics.Load(); m != nil {
		m.ObserveRequest(host, took, err)
	}
}
