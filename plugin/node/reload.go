package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/trust"
)

// ErrReloadRefused wraps the reason a new snapshot was not taken: the old
// one keeps deciding.
var ErrReloadRefused = errors.New("reload refused")

// watchEvery is how often the sealed files are looked at for a change. A
// look is a stat of a handful of small files.
const watchEvery = time.Second

// Reload checks the trust store as it is now against the TPM and, when it
// opens, swaps the snapshot it describes in for the one in force: policy,
// keys, roots, verdict store and clock mark together. The runtime
// connection is not touched, and every decision is made by one snapshot or
// the other, never by none. A trust store that does not open is refused,
// logged and counted; the snapshot in force keeps deciding. A trust store
// sealed at the generation in force with the same digest changes nothing.
func (n *Node) Reload() error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	defer func() {
		if n.onSwap != nil {
			n.onSwap(n.cur.Load())
		}
	}()
	prev := n.cur.Load()
	c, err := n.check()
	if err != nil {
		n.refused.Add(1)
		n.log.Error("RELOAD REFUSED: the trust store as it is now does not open; the snapshot in force keeps deciding", n.snapAttrs(prev, "error", err.Error())...)
		return fmt.Errorf("%w: %w", ErrReloadRefused, err)
	}
	if same(prev, c) {
		return nil
	}
	snap, err := n.commit(c, prev)
	if err != nil {
		n.refused.Add(1)
		n.log.Error("RELOAD FAILED after the trust store was checked; the snapshot in force keeps deciding from memory (its verdicts are no longer persisted): restart sealgate", n.snapAttrs(prev, "error", err.Error())...)
		return fmt.Errorf("%w: %w", ErrReloadRefused, err)
	}
	n.cur.Store(snap)
	n.accepted.Add(1)
	n.log.Info("trust store reloaded: the new snapshot decides", n.snapAttrs(snap)...)
	if err := n.measure(snap); err != nil {
		n.log.Error("the new trust store decides, but measuring it into the TPM failed: a quote shows the one before it until the next start", "error", err.Error())
	}
	if p := n.plugin.Load(); p != nil {
		// What a revoked key signed may be running: say which.
		why := "trust store reloaded"
		if snap.opened != nil {
			why = fmt.Sprintf("trust generation %d", snap.opened.Generation)
		}
		go p.Reevaluate(why)
	}
	return nil
}

// Reloads says how many reloads were accepted and refused.
func (n *Node) Reloads() (accepted, refused int64) { return n.accepted.Load(), n.refused.Load() }

// same reports whether c is the snapshot in force.
func same(prev *snapshot, c *checked) bool {
	if prev == nil {
		return false
	}
	if prev.opened == nil || c.opened == nil {
		return prev.opened == nil && c.opened == nil && prev.engine.Policy().Digest == c.pol.Digest
	}
	return prev.opened.Generation == c.opened.Generation && prev.opened.Record.Digest == c.opened.Record.Digest
}

// snapAttrs are the log attributes that name a snapshot.
func (n *Node) snapAttrs(s *snapshot, more ...any) []any {
	pol := s.engine.Policy()
	attrs := []any{"policy", pol.Path, "policyDigest", pol.Digest, "mode", pol.Mode, "rules", len(pol.Rules)}
	if s.opened != nil {
		attrs = append(attrs, "generation", s.opened.Generation, "trustDigest", s.opened.Record.Digest)
	}
	return append(attrs, more...)
}

// watch reloads when a reload is asked for (SIGHUP, wired by the caller)
// or the sealed files change, until ctx ends.
func (n *Node) watch(ctx context.Context) error {
	last := n.fingerprint()
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.cfg.ReloadRequests:
			n.log.Info("reload asked for")
			_ = n.Reload()
			last = n.fingerprint()
		case <-tick.C:
			if fp := n.fingerprint(); fp != last {
				// Once per change: a refused state is logged once,
				// not every second.
				last = fp
				n.log.Info("the sealed files changed; checking them against the TPM")
				_ = n.Reload()
				last = n.fingerprint()
			}
		}
	}
}

// fingerprint summarises the files a reload reads: the seal record and
// the files it lists (or, without a TPM, the policy file), by content, so
// that a change within the same second is seen too.
func (n *Node) fingerprint() [sha256.Size]byte {
	h := sha256.New()
	add := func(p string) {
		fmt.Fprintf(h, "%s\x00", p)
		f, err := os.Open(p)
		if err != nil {
			fmt.Fprintf(h, "error %v\x00", err)
			return
		}
		defer f.Close()
		_, _ = io.Copy(h, io.LimitReader(f, 16<<20))
		h.Write([]byte{0})
	}
	if n.cfg.InsecureNoTPM {
		p := n.cfg.PolicyFile
		if p == "" {
			p = filepath.Join(n.cfg.TrustDir, trust.PolicyName)
		}
		add(p)
	} else {
		add(filepath.Join(n.cfg.TrustDir, trust.RecordName))
		if s := n.cur.Load(); s != nil && s.opened != nil {
			for _, f := range s.opened.Record.Files {
				add(filepath.Join(n.cfg.TrustDir, filepath.FromSlash(f.Path)))
			}
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// live decides with the snapshot in force at the moment of each call, so
// that the runtime connection, the runtime gate and the warmer keep one
// Decider across reloads.
type live struct{ n *Node }

var (
	_ plugin.Decider      = live{}
	_ plugin.PulledPicker = live{}
)

func (l live) PickPulled(ctx context.Context, tag string, candidates []string) (string, error) {
	return l.n.cur.Load().engine.PickPulled(ctx, tag, candidates)
}

func (l live) Decide(ctx context.Context, req decision.Request) decision.Decision {
	return l.n.cur.Load().engine.Decide(ctx, req)
}

func (l live) Quick(req decision.Request) (decision.Decision, bool) {
	return l.n.cur.Load().engine.Quick(req)
}

func (l live) Refuse(req decision.Request, reason string) decision.Decision {
	return l.n.cur.Load().engine.Refuse(req, reason)
}
