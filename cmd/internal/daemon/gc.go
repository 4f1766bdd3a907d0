package daemon

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The daemon's GC target follows its live heap: the heap may grow by
// gcHeadroom past what is live before a collection, as a percentage
// between minGCPercent and maxGCPercent. With 10,000 verdicts live that is
// about 25% (a heap at most 1.25 times what is live, not Go's default
// twice); with a few hundred, where the protocol's messages are most of
// what is allocated, collections stay as rare as with Go's default rather
// than running every megabyte. Verification, which allocates most, runs in
// the verifier process. GOGC in the environment turns this off.
const (
	gcHeadroom   = 3 << 20
	minGCPercent = 25
	maxGCPercent = 100
	gcTuneEvery  = time.Second
)

// gcPercentFor is the GC target for live bytes of live heap, in steps of
// 5 so that the target does not move with every small change.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	p := int(gcHeadroom * 100 / live)
	p -= p % 5
	return min(max(p, minGCPercent), maxGCPercent)
}

// tuneGC sets the GC target from the live heap every gcTuneEvery until
// ctx is done.
func tuneGC(ctx context.Context) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	cur := -1
	tick := time.NewTicker(gcTuneEvery)
	defer tick.Stop()
	for {
		metrics.Read(s)
		if s[0].Value.Kind() == metrics.KindUint64 {
			if p := gcPercentFor(s[0].Value.Uint64()); p != cur {
				debug.SetGCPercent(p)
				cur = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
