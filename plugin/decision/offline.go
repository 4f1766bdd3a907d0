package decision

import (
	"context"
	"math"
	"time"

	"github.com/sealgate/sealgate/plugin/cache"
)

// What the engine does around the slow path (Checker): the budget it gives
// the sources, and the verdicts that may serve when they do not answer.

// fetchContext keeps part of the caller's deadline for answering: the
// sources get 80% of what remains, so that when they time out, an offline
// verdict can still be looked up and the answer goes back in time.
func (e *Engine) fetchContext(ctx context.Context) context.Context {
	dl, ok := ctx.Deadline()
	if !ok {
		return ctx
	}
	budget := time.Until(dl) * 4 / 5
	fctx, cancel := context.WithTimeoutCause(ctx, budget, ErrFetchTimeout)
	// The fetch is bounded by the budget; release the timer with ctx.
	context.AfterFunc(ctx, cancel)
	return fctx
}

// offlineVerdict returns the newest allow verdict for key that is young
// enough to serve while the sources are unreachable.
func (e *Engine) offlineVerdict(key cache.Key) (cache.Verdict, bool) {
	max := e.policy.Offline.MaxVerdictAge
	if max <= 0 || e.noOffline != "" {
		return cache.Verdict{}, false
	}
	var best cache.Verdict
	found := false
	for _, s := range []cache.Store{e.cache, e.offline} {
		if s == nil {
			continue
		}
		if v, ok := s.Get(key); ok && v.Allowed && e.age(v) <= max && validUntil(v).IsZero() && (!found || v.VerifiedAt.After(best.VerifiedAt)) {
			best, found = v, true
		}
	}
	return best, found
}

// age is how old a verdict is: the larger of the wall clock's and the
// monotonic (TPM) clock's measure, so that setting the system time back
// does not make a verdict younger.
func (e *Engine) age(v cache.Verdict) time.Duration {
	age := e.now().Sub(v.VerifiedAt)
	if e.mono != nil && v.Clock > 0 {
		m := e.mono() - v.Clock
		if m < 0 {
			// Verified at a clock value the clock has not reached: it went
			// back, and the age cannot be established.
			return time.Duration(math.MaxInt64)
		}
		if m > age {
			age = m
		}
	}
	return age
}
