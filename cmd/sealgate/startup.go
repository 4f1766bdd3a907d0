package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
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

// anchorFlags say where the trust store, the TPM and the persisted verdicts
// are.
type anchorFlags struct {
	dir      string
	tpm      string
	stateDir string
	noTPM    bool
	// readOnly anchors as the daemon does but changes nothing: no PCR
	// extended, no verdict or clock mark written (sealgate verify, beside
	// a running daemon).
	readOnly bool
}

// anchored is what start-up established: the engine options that come
// from the TPM (offline store, monotonic clock) and what to close.
type anchored struct {
	opts    []decision.Option
	store   *cache.Persistent
	opened  *trust.Opened
	closeFn func()
}

// anchor opens the TPM, checks the trust store against its seal and opens
// the persisted verdict cache. Any mismatch is an error naming what
// differs: the daemon must not start on a trust store nobody sealed.
// Without a TPM it refuses unless noTPM is set, and then says loudly what
// protection is lost.
func (f *anchorFlags) anchor(log *slog.Logger) (*anchored, error) {
	if f.noTPM {
		log.Warn("RUNNING WITHOUT A TPM (--insecure-no-tpm): the trust store on disk is trusted as it is (anyone who can write it can add a key or relax the policy), and verdicts are not persisted, so nothing serves while the registry is unreachable after a restart")
		return &anchored{closeFn: func() {}}, nil
	}
	t, err := tpm.Open(f.tpm)
	if err != nil {
		return nil, err // names the TPM and the --insecure-no-tpm escape
	}
	defer t.Close()
	opened, err := trust.Open(f.dir, t)
	if err != nil {
		return nil, err
	}
	if f.readOnly {
		// nothing is measured
	} else if extended, err := opened.Measure(t); err != nil {
		return nil, err
	} else if extended {
		log.Info("trust store measured into the TPM", "pcr", opened.Record.MeasurePCR, "digest", opened.Record.Digest)
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
	if f.readOnly {
		cacheOpts = append(cacheOpts, cache.WithReadOnly())
	}
	store, stats, err := cache.OpenPersistent(f.stateDir, opened.DeriveKey(cacheKeyPurpose), opened.Generation, cacheOpts...)
	if err != nil {
		return nil, err
	}
	if f.readOnly {
		var opts []decision.Option
		key := opened.DeriveKey(clockMarkPurpose)
		why := clockUnusable(f.stateDir, key, opened.Generation, clk, store)
		if _, hasMark, _ := cache.ReadClockMark(f.stateDir, key, opened.Generation); why == "" && !hasMark && store.Len() > 0 {
			why = "the verdicts have no clock mark (the daemon purges them when it starts)"
		}
		if why != "" {
			opts = append(opts, decision.WithOfflineUnavailable(why))
		}
		return &anchored{opts: append(opts, decision.WithOfflineStore(store), decision.WithMonotonicClock(mono)), store: store, opened: opened,
			closeFn: sync.OnceFunc(func() { _ = store.Close() })}, nil
	}
	log.Info("trust store verified against the TPM", "dir", f.dir, "generation", opened.Generation, "digest", opened.Record.Digest, "files", len(opened.Record.Files))
	log.Info("verdict cache loaded", "dir", f.stateDir, "loaded", stats.Loaded, "badMAC", stats.BadMAC, "oldGeneration", stats.OldGeneration,
		"newerGeneration", stats.NewerGeneration, "malformed", stats.Malformed)
	opts := []decision.Option{decision.WithOfflineStore(store), decision.WithMonotonicClock(mono)}
	markKey := opened.DeriveKey(clockMarkPurpose)
	if why := checkClock(f.stateDir, markKey, opened.Generation, clk, store); why != "" {
		log.Warn("OFFLINE VERDICTS ARE OFF: "+why+"; images are decided only while their signatures can be fetched", "tpmClock", clk.Clock.String())
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
				raiseClockMark(f.stateDir, markKey, opened.Generation, mono(), log)
			}
		}
	}()
	return &anchored{
		opts:   opts,
		store:  store,
		opened: opened,
		closeFn: sync.OnceFunc(func() {
			close(stopMark)
			<-markDone
			raiseClockMark(f.stateDir, markKey, opened.Generation, mono(), log)
			if err := store.Close(); err != nil {
				log.Error("closing the verdict cache", "error", err)
			}
		}),
	}, nil
}

// clockMarkPurpose derives the clock mark's MAC key from the sealed key.
const clockMarkPurpose = "sealgate clock mark v1"

// clockMarkEvery is how often the highest clock seen is written down.
const clockMarkEvery = time.Minute

// checkClock says why the TPM's clock cannot measure verdict ages (empty
// when it can), and moves the mark up to it when it can. The highest clock
// seen is the mark's value and every loaded verdict's (both authenticated);
// a TPM clock behind it went back. Verdicts whose age cannot be established
// because the mark is gone are purged, not trusted.
func checkClock(dir string, key []byte, generation uint64, clk tpm.Clock, store *cache.Persistent) string {
	if why := clockUnusable(dir, key, generation, clk, store); why != "" {
		return why
	}
	if _, hasMark, _ := cache.ReadClockMark(dir, key, generation); !hasMark && store.Len() > 0 {
		// Verdicts without a mark (written by an older sealgate, or the
		// mark was removed): their clock cannot be checked.
		if err := store.Purge(); err != nil {
			return "verdicts without a clock mark could not be purged: " + err.Error()
		}
	}
	if err := cache.WriteClockMark(dir, key, generation, clk.Clock); err != nil {
		return err.Error()
	}
	return ""
}

// clockUnusable says why the TPM's clock cannot measure verdict ages, or
// "" when it can; it changes nothing.
func clockUnusable(dir string, key []byte, generation uint64, clk tpm.Clock, store *cache.Persistent) string {
	mark, _, err := cache.ReadClockMark(dir, key, generation)
	if err != nil {
		return fmt.Sprintf("%v: the highest TPM clock value seen is unknown (sealgate cache purge clears the verdicts and the mark)", err)
	}
	seen := mark
	for _, e := range store.Entries() {
		seen = max(seen, e.Verdict.Clock)
	}
	switch {
	case !clk.Safe:
		return "the TPM reports its clock may have lost time (Safe is false: it lost power without saving the clock)"
	case clk.Clock < seen:
		return fmt.Sprintf("the TPM clock (%s) is behind the highest value seen (%s): it went back (a TPM cleared or a TPM simulator restarted)", clk.Clock.Round(time.Second), seen.Round(time.Second))
	}
	return ""
}

// raiseClockMark writes clock as the mark if it is above the mark.
func raiseClockMark(dir string, key []byte, generation uint64, clock time.Duration, log *slog.Logger) {
	mark, _, err := cache.ReadClockMark(dir, key, generation)
	if err != nil || clock <= mark {
		return
	}
	if err := cache.WriteClockMark(dir, key, generation, clock); err != nil {
		log.Error("writing the TPM clock mark failed", "error", err)
	}
}

// policyPath is the policy to load: --policy, else the trust store's.
func (f *anchorFlags) policyPath(explicit string) string {
	if explicit != "" {
		return explicit
	}
	return filepath.Join(f.dir, "policy.yaml")
}

// sealedPolicy parses the trust store's policy, and every file it names,
// from the content that was checked against the TPM: nothing is read from
// disk again, so a file swapped after the check is never used, and a file
// the seal does not cover cannot be named.
func sealedPolicy(opened *trust.Opened) (*policy.Policy, error) {
	const name = "policy.yaml"
	data, err := opened.ReadFile(name)
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
	return policy.Parse(filepath.Join(opened.Dir, name), data, policy.WithFileReader(read))
}
