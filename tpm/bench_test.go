package tpm

import (
	"testing"

	"github.com/sealgate/sealgate/tpm/tpmsim"
	"github.com/sealgate/sealgate/tpm/tpmtest"
)

// BenchmarkUnsealSwtpm measures the TPM's share of the daemon's start-up
// against swtpm: open the TPM, read the generation, unseal the trust-store
// key, close. (The start-up target, TPM open + unseal + trust check +
// cache load, is under 300 ms.)
func BenchmarkUnsealSwtpm(b *testing.B) {
	sw := tpmtest.StartSwtpm(b)
	benchmarkUnseal(b, func() (TPM, error) { return Open(sw.Spec) }, nil)
}

// BenchmarkUnsealSwtpmPCR is BenchmarkUnsealSwtpm with the key bound to a
// PCR as well.
func BenchmarkUnsealSwtpmPCR(b *testing.B) {
	sw := tpmtest.StartSwtpm(b)
	benchmarkUnseal(b, func() (TPM, error) { return Open(sw.Spec) }, []int{16})
}

// BenchmarkUnsealSimulator is the same against the in-process simulator,
// which has no socket: the difference is swtpm's transport and process.
func BenchmarkUnsealSimulator(b *testing.B) {
	sim, err := tpmsim.New()
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	benchmarkUnseal(b, func() (TPM, error) { return Wrap(sim.Transport()) }, nil)
}

func benchmarkUnseal(b *testing.B, open func() (TPM, error), pcrs []int) {
	tp, err := open()
	if err != nil {
		b.Fatal(err)
	}
	gen, err := tp.IncrementGeneration()
	if err != nil {
		b.Fatal(err)
	}
	secret := make([]byte, 32)
	s, err := tp.Seal(secret, Policy{Generation: gen, PCRs: pcrs})
	if err != nil {
		b.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		tp, err := open()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tp.Generation(); err != nil {
			b.Fatal(err)
		}
		if _, err := tp.Unseal(s); err != nil {
			b.Fatal(err)
		}
		if err := tp.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
