package node

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/tpm"
)

// cacheKeyPurpose derives the verdict cache's MAC key from the sealed key.
const cacheKeyPurpose = "sealgate verdict cache v1"

// Node is an opened node: the trust store checked against the TPM, the
// policy parsed from the checked bytes, the persisted verdicts, and the
// decision engine built from them.
type Node struct {
	cfg     Config
	log     *slog.Logger
	engine  *decision.Engine
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
	n := &Node{cfg: cfg, log: cfg.Logger, closeFn: func() {}}
	var (
		pol  *policy.Policy
		opts []decision.Option
	)
	if cfg.InsecureNoTPM {
		if cfg.Access == Daemon {
			n.log.Warn("RUNNING WITHOUT A TPM (--insecure-no-tpm): the trust store on disk is trusted as it is (anyone who can write it can add a key or relax the policy), and verdicts are not persisted, so nothing serves while the registry is unreachable after a restart")
		}
		path := cfg.PolicyFile
		if path == "" {
			path = filepath.Join(cfg.TrustDir, trust.PolicyName)
		}
		if pol, err = policy.Load(path); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	} else {
		if opts, err = n.anchor(); err != nil {
			return nil, err
		}
		if pol, err = sealedPolicy(n.opened); err != nil {
			n.Close()
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	src, err := NewSource(cfg)
	if err != nil {
		n.Close()
		return nil, err
	}
	opts = append([]decision.Option{decision.WithCache(cache.NewMemory(cfg.CacheSize)), decision.WithRevalidateAfter(cfg.RevalidateAfter)}, opts...)
	if n.engine, err = decision.New(pol, src, opts...); err != nil {
		n.Close()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return n, nil
}

// Engine decides.
func (n *Node) Engine() *decision.Engine { return n.engine }

// Trust is the opened trust store; nil without a TPM.
func (n *Node) Trust() *trust.Opened { return n.opened }

// Verdicts is the persisted verdict store; nil without a TPM.
func (n *Node) Verdicts() *cache.Persistent { return n.store }

// LoadStats says what loading the persisted verdicts found.
func (n *Node) LoadStats() cache.LoadStats { return n.stats }

// OfflineUnavailable says why offline verdicts are off ("" when they are
// not).
func (n *Node) OfflineUnavailable() string { return n.offline }

// Close stops the clock mark, writes it one last time and closes the
// verdict store. It is safe to call more than once.
func (n *Node) Close() { n.closeFn() }

// anchor opens the TPM, the trust store and the verdict cache and checks
// the clock. It returns the engine options that come from the TPM.
func (n *Node) anchor() ([]decision.Option, error) {
	cfg, log := n.cfg, n.log
	t, err := tpm.Open(cfg.TPM)
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
	n.opened = opened
	if cfg.Access == Daemon {
		if extended, err := opened.Measure(t); err != nil {
			return nil, err
		} else if extended {
			log.Info("trust store measured into the TPM", "pcr", opened.Record.MeasurePCR, "digest", opened.Record.Digest)
		}
	}
	clk, err := t.Clock()
	if err != nil {
		return nil, fmt.Errorf("read the TPM clock: %w", err)
	}
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
	n.store, n.stats = store, stats
	n.closeFn = sync.OnceFunc(func() { _ = store.Close() })
	markKey := opened.DeriveKey(clockMarkPurpose)
	opts := []decision.Option{decision.WithOfflineStore(store), decision.WithMonotonicClock(mono)}
	if cfg.Access != Daemon {
		why := clockUnusable(cfg.StateDir, markKey, opened.Generation, clk, store)
		if _, hasMark, _ := cache.ReadClockMark(cfg.StateDir, markKey, opened.Generation); why == "" && !hasMark && store.Len() > 0 {
			why = "the verdicts have no clock mark (the daemon purges them when it starts)"
		}
		if why != "" {
			n.offline = why
			opts = append(opts, decision.WithOfflineUnavailable(why))
		}
		return opts, nil
	}
	log.Info("trust store verified against the TPM", "dir", cfg.TrustDir, "generation", opened.Generation, "digest", opened.Record.Digest, "files", len(opened.Record.Files))
	log.Info("verdict cache loaded", "dir", cfg.StateDir, "loaded", stats.Loaded, "badMAC", stats.BadMAC, "oldGeneration", stats.OldGeneration,
		"newerGeneration", stats.NewerGeneration, "malformed", stats.Malformed)
	if why := checkClock(cfg.StateDir, markKey, opened.Generation, clk, store); why != "" {
		log.Warn("OFFLINE VERDICTS ARE OFF: "+why+"; images are decided only while their signatures can be fetched", "tpmClock", clk.Clock.String())
		n.offline = why
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
	n.closeFn = sync.OnceFunc(func() {
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
