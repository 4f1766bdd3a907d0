package cache

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkOpen10000 opens a store holding 10,000 verdicts (two satisfiers
// each, as the decision engine writes them) and closes it: lock, clean-up,
// one read, 10,000 HMACs and decodes. The TPM unseal that precedes it in
// the daemon is measured in tpm/.
func BenchmarkOpen10000(b *testing.B) {
	dir := b.TempDir()
	fill(b, dir, 10000)
	fi, err := os.Stat(filepath.Join(dir, SnapshotFile))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p, st, err := OpenPersistent(dir, testKey(1), testGen)
		if err != nil {
			b.Fatal(err)
		}
		if st.Loaded != 10000 {
			b.Fatalf("loaded %d", st.Loaded)
		}
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(fi.Size())/(1<<20), "MiB")
}

// BenchmarkPersistentGet is a cache hit; compare BenchmarkMemoryGet.
func BenchmarkPersistentGet(b *testing.B) {
	p, _ := openT(b, b.TempDir(), testKey(1), testGen)
	for i := range 1000 {
		p.Put(key(i), Verdict{Allowed: true})
	}
	k := key(500)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := p.Get(k); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkPersistentPut is the cost a verification pays to store its
// verdict: encoding and MAC, no I/O.
func BenchmarkPersistentPut(b *testing.B) {
	p, _ := openT(b, b.TempDir(), testKey(1), testGen)
	v := verdictFor(1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.Put(key(i%5000), v)
		i++
	}
}

// BenchmarkFlush10000 rewrites a snapshot of 10,000 verdicts durably (the
// background flusher's work after a change).
func BenchmarkFlush10000(b *testing.B) {
	p, _ := openT(b, b.TempDir(), testKey(1), testGen, WithFlushDelay(1<<40))
	for i := range 10000 {
		p.Put(key(i), verdictFor(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Put(key(0), verdictFor(0))
		if err := p.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}
