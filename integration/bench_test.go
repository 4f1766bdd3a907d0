//go:build integration

package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
)

// BenchmarkCreateStart times what a kubelet does for a one-container pod
// of a signed image (crictl runp, create, start; the verdict is cached after
// the first) on real containerd: with NRI only, and with both gates (runc
// run through sealgate-runc, which asks sealgate about the sandbox and the
// container). The difference is what the runtime gate adds.
//
//	go test -tags integration -run '^$' -bench CreateStart -benchtime 30x ./integration/
func BenchmarkCreateStart(b *testing.B) {
	f := newFixture(b)
	b.Run("nri-only", func(b *testing.B) {
		c := f.node(b, "sealgate")
		startSealgate(b, f, c)
		benchRuns(b, c, f.signedTag)
	})
	b.Run("both-gates", func(b *testing.B) {
		n := newGatedNode(b, f)
		n.start(b)
		benchRuns(b, n.c, f.signedTag)
	})
}

func benchRuns(b *testing.B, c *testenv.Containerd, image string) {
	if _, out, err := c.Run(image, "warm", "default"); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	var took []time.Duration
	i := 0
	for b.Loop() {
		i++
		start := time.Now()
		if _, out, err := c.Run(image, fmt.Sprintf("b%d", i), "default"); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "median-ms")
}
