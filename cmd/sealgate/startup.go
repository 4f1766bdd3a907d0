package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
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
	if extended, err := opened.Measure(t); err != nil {
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
	store, stats, err := cache.OpenPersistent(f.stateDir, opened.DeriveKey(cacheKeyPurpose), opened.Generation,
		cache.WithFlushErrorHandler(func(err error) { log.Error("persisting verdicts failed", "error", err) }))
	if err != nil {
		return nil, err
	}
	log.Info("trust store verified against the TPM", "dir", f.dir, "generation", opened.Generation, "digest", opened.Record.Digest, "files", len(opened.Record.Files))
	log.Info("verdict cache loaded", "dir", f.stateDir, "loaded", stats.Loaded, "badMAC", stats.BadMAC, "oldGeneration", stats.OldGeneration,
		"newerGeneration", stats.NewerGeneration, "malformed", stats.Malformed)
	return &anchored{
		opts:   []decision.Option{decision.WithOfflineStore(store), decision.WithMonotonicClock(mono)},
		store:  store,
		opened: opened,
		closeFn: func() {
			if err := store.Close(); err != nil {
				log.Error("closing the verdict cache", "error", err)
			}
		},
	}, nil
}

// policyPath is the policy to load: --policy, else the trust store's.
func (f *anchorFlags) policyPath(explicit string) string {
	if explicit != "" {
		return explicit
	}
	return filepath.Join(f.dir, "policy.yaml")
}
