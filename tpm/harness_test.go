package tpm

import (
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealgate/sealgate/tpm/tpmsim"
	"github.com/sealgate/sealgate/tpm/tpmtest"
)

// harness is one TPM under test, reachable by several handles in turn,
// as the daemon and the CLI reach a node's TPM.
type harness struct {
	name string
	// open returns a new handle on the same TPM, closed at the end of the
	// test and checked for leaked handles.
	open func(t *testing.T, opts ...Option) TPM
	// reboot power-cycles the TPM: NV stays, PCRs reset.
	reboot func(t *testing.T)
}

// backends are the TPMs every behavioural test runs on.
var backends = []struct {
	name  string
	start func(t *testing.T) *harness
}{
	{"simulator", simulatorHarness},
	{"swtpm", swtpmHarness},
}

// forEachBackend runs f on a fresh TPM of each backend.
func forEachBackend(t *testing.T, f func(t *testing.T, h *harness)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.start(t)) })
	}
}

func simulatorHarness(t *testing.T) *harness {
	t.Helper()
	sim, err := tpmsim.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close simulator: %v", err)
		}
	})
	return &harness{
		name: "simulator",
		open: func(t *testing.T, opts ...Option) TPM {
			t.Helper()
			tp, err := Wrap(sim.Transport(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			return closeAtEnd(t, tp)
		},
		reboot: func(t *testing.T) {
			t.Helper()
			if err := sim.Reboot(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func swtpmHarness(t *testing.T) *harness {
	t.Helper()
	sw := tpmtest.StartSwtpm(t)
	return &harness{
		name: "swtpm",
		open: func(t *testing.T, opts ...Option) TPM {
			t.Helper()
			tp, err := Open(sw.Spec, opts...)
			if err != nil {
				t.Fatal(err)
			}
			return closeAtEnd(t, tp)
		},
		reboot: func(t *testing.T) { t.Helper(); sw.Restart(t) },
	}
}

// closeAtEnd checks, when the test ends, that tp left no handle behind,
// and closes it. Registered before the backend's own cleanup runs, it
// runs while the TPM is still there.
func closeAtEnd(t *testing.T, tp TPM) TPM {
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return tp
}

// handleKinds are the handle ranges a leak would show in: transient
// objects, loaded sessions (HMAC and policy) and saved sessions.
var handleKinds = []struct {
	name string
	ht   tpm2.TPMHT
}{
	{"transient objects", tpm2.TPMHTTransient},
	{"loaded sessions", tpm2.TPMHTHMACSession},
	{"saved sessions", tpm2.TPMHTPolicySession},
}

// loadedHandles lists the handles of one kind the TPM holds now.
func loadedHandles(tp TPM, ht tpm2.TPMHT) ([]tpm2.TPMHandle, error) {
	d, ok := tp.(*device)
	if !ok {
		return nil, fmt.Errorf("%T is not *device", tp)
	}
	end, err := d.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(ht) << 24,
		PropertyCount: 64,
	}.Execute(d.t)
	if err != nil {
		return nil, err
	}
	hs, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		return nil, err
	}
	var out []tpm2.TPMHandle
	for _, h := range hs.Handle {
		if uint32(h)>>24 == uint32(ht) {
			out = append(out, h)
		}
	}
	return out, nil
}

// noLeaks fails the test when the TPM holds any transient object or
// session: every operation must flush what it created, on every path.
func noLeaks(t *testing.T, tp TPM, after string) {
	t.Helper()
	for _, k := range handleKinds {
		hs, err := loadedHandles(tp, k.ht)
		if err != nil {
			t.Fatalf("after %s: list %s: %v", after, k.name, err)
		}
		if len(hs) > 0 {
			t.Errorf("after %s: %d %s left loaded: %v", after, len(hs), k.name, hs)
		}
	}
}
