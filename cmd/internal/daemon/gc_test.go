package daemon

import "testing"

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, maxGCPercent},
		{1 << 20, maxGCPercent},   // a small heap: Go's default
		{3 << 20, maxGCPercent},   // headroom equals live
		{4 << 20, 75},             // 3/4
		{5 << 20, 60},             // 3/5
		{7 << 20, 40},             // 42.8, down to a step of 5
		{12 << 20, minGCPercent},  // 10,000 verdicts: 25
		{100 << 20, minGCPercent}, // never below the floor
		{6<<20 + 512<<10, 45},     // 46.1 → 45
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d KiB) = %d, want %d", c.live>>10, got, c.want)
		}
	}
}
