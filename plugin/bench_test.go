package plugin_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/decisionlog"
	"github.com/sealgate/sealgate/plugin/metrics"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
)

// latencies records one duration per iteration and reports percentiles, so
// the figures docs/performance.md quotes (median, p99) come from the
// benchmark itself rather than from a timed test.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	pct := func(p float64) float64 { return float64(l[int(float64(len(l)-1)*p)].Nanoseconds()) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
}

// nopStore never keeps a verdict, so every decision goes to the registry.
type nopStore struct{}

func (nopStore) Get(cache.Key) (cache.Verdict, bool) { return cache.Verdict{}, false }
func (nopStore) Put(cache.Key, cache.Verdict)        {}

func benchEngine(b testing.TB, f *fixture, store cache.Store) *decision.Engine {
	b.Helper()
	pol, err := policy.Load(f.writePolicy(b, "enforce"))
	if err != nil {
		b.Fatal(err)
	}
	src, err := source.NewRegistry(source.WithHostsDir(filepath.Join(b.TempDir(), "certs.d")))
	if err != nil {
		b.Fatal(err)
	}
	var opts []decision.Option
	if store != nil {
		opts = append(opts, decision.WithCache(store))
	}
	e := engineOver(b, pol, src, opts...)
	return e
}

// BenchmarkDecideCached is a decision for an image already verified, in
// process: policy match and cache lookup.
func BenchmarkDecideCached(b *testing.B) {
	f := loadFixture(b)
	e := benchEngine(b, f, nil)
	d := f.digests["signed"]
	req := decision.Request{Image: d.Context().String() + ":v1", Digest: d.DigestStr(), Namespace: "default"}
	if got := e.Decide(context.Background(), req); !got.Allowed {
		b.Fatalf("not allowed: %v", got.Err())
	}
	lat := make(latencies, 0, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		got := e.Decide(context.Background(), req)
		lat = append(lat, time.Since(start))
		if got.Source != decision.SourceCache {
			b.Fatalf("source %s, want cache", got.Source)
		}
	}
	lat.report(b)
}

// BenchmarkNRICachedDecision is a cached decision through the real NRI
// protocol: the runtime side's CreateContainer to the plugin and back.
func BenchmarkNRICachedDecision(b *testing.B) {
	f := loadFixture(b)
	n := startNode(b, f.writePolicy(b, "enforce"))
	d := f.digests["signed"]
	if err := n.create(b, d, "v1"); err != nil {
		b.Fatal(err)
	}
	lat := make(latencies, 0, 1<<14)
	for b.Loop() {
		start := time.Now()
		err := n.create(b, d, "v1")
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	lat.report(b)
}

// BenchmarkFirstDecision fetches the signature from the registry on
// 127.0.0.1 and verifies it, every time.
func BenchmarkFirstDecision(b *testing.B) {
	f := loadFixture(b)
	e := benchEngine(b, f, nopStore{})
	d := f.digests["signed"]
	req := decision.Request{Image: d.Context().String() + ":v1", Digest: d.DigestStr(), Namespace: "default"}
	lat := make(latencies, 0, 1<<12)
	for b.Loop() {
		start := time.Now()
		got := e.Decide(context.Background(), req)
		lat = append(lat, time.Since(start))
		if !got.Allowed || got.Source != decision.SourceVerified {
			b.Fatalf("got %+v", got)
		}
	}
	lat.report(b)
}

// TestCachedDecisionAllocs: a cached decision allocates nothing, in the
// engine nor in the plugin's CreateContainer handler (with the runtime
// gate's record of the container), and starts no goroutine or timer: the
// hot path costs no more than the protocol.
func TestCachedDecisionAllocs(t *testing.T) {
	f := loadFixture(t)
	e := benchEngine(t, f, nil)
	d := f.digests["signed"]
	ctx := context.Background()
	req := decision.Request{Image: d.Context().String() + ":v1", Digest: d.DigestStr(), Namespace: "default"}
	if got := e.Decide(ctx, req); !got.Allowed {
		t.Fatalf("not allowed: %v", got.Err())
	}
	if n := testing.AllocsPerRun(1000, func() { e.Decide(ctx, req) }); n != 0 {
		t.Errorf("engine: %v allocations per cached decision, want 0", n)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	gate := plugin.NewGate(e, nil, time.Second, log)
	p, err := plugin.New(e, plugin.WithLogger(log), plugin.WithGate(gate))
	if err != nil {
		t.Fatal(err)
	}
	ctr := &api.Container{Id: "ctr-1", PodSandboxId: testPod.Id, Name: "ctr", Image: &api.Image{Name: req.Image, Digest: req.Digest}}
	if _, _, err := p.CreateContainer(ctx, testPod, ctr); err != nil {
		t.Fatal(err)
	}
	goroutines := runtime.NumGoroutine()
	n := testing.AllocsPerRun(1000, func() { _, _, _ = p.CreateContainer(ctx, testPod, ctr) })
	t.Logf("CreateContainer: %v allocations per cached decision", n)
	if n > 0 {
		t.Errorf("CreateContainer: %v allocations per cached decision, want 0", n)
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		t.Errorf("goroutines %d -> %d: the hot path left some behind", goroutines, g)
	}
	// With the decision log and metrics on, the line is queued and the
	// counters move without allocating.
	w, err := decisionlog.Open(filepath.Join(t.TempDir(), "decisions.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New("test", func() metrics.State { return metrics.State{} })
	logged, err := plugin.New(e, plugin.WithLogger(log), plugin.WithGate(gate), plugin.WithDecisionLog(w, func() uint64 { return 1 }), plugin.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	// The writer is not running while allocations are counted (they are
	// counted process-wide); the lines wait in its queue.
	if n := testing.AllocsPerRun(1000, func() { _, _, _ = logged.CreateContainer(ctx, testPod, ctr) }); n > 0 {
		t.Errorf("CreateContainer with the decision log and metrics: %v allocations per cached decision, want 0", n)
	}
	drained, stop := context.WithCancel(ctx)
	stop()
	if err := w.Run(drained); err != nil || w.Lost() != 0 {
		t.Fatalf("writing the queued lines: %v, %d lost", err, w.Lost())
	}
}
