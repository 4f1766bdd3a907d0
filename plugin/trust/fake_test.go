package trust

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/sealgate/sealgate/tpm"
)

// fakeTPM is an in-package stand-in for the unit tests of this package
// only: it keeps the counter, the PCRs and the sealed objects in memory and
// enforces the policy stored inside each object, as a TPM does (the
// Sealed's own Generation and PCRs are not trusted). The same tests run on
// the simulator and on swtpm (tpm_test.go).
type fakeTPM struct {
	st     *fakeState
	closed bool
}

var _ tpm.TPM = (*fakeTPM)(nil)

type fakeState struct {
	mu      sync.Mutex
	counter uint64
	pcrs    [24][sha256.Size]byte
	objects map[string]fakeObject
}

type fakeObject struct {
	secret []byte
	gen    uint64
	pcrs   map[int][sha256.Size]byte
}

func newFake() *fakeTPM { return &fakeTPM{st: &fakeState{objects: map[string]fakeObject{}}} }

// restart is the same TPM after the daemon restarted: new handle, same state.
func (f *fakeTPM) restart() *fakeTPM { return &fakeTPM{st: f.st} }

// reboot is the same TPM after the node rebooted: PCRs reset.
func (f *fakeTPM) reboot() *fakeTPM {
	f.st.mu.Lock()
	f.st.pcrs = [24][sha256.Size]byte{}
	f.st.mu.Unlock()
	return f.restart()
}

func (f *fakeTPM) lock() (func(), error) {
	if f.closed {
		return nil, errors.New("fake TPM closed")
	}
	f.st.mu.Lock()
	return f.st.mu.Unlock, nil
}

func (f *fakeTPM) Seal(secret []byte, p tpm.Policy) (*tpm.Sealed, error) {
	unlock, err := f.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if f.st.counter == 0 {
		return nil, tpm.ErrCounterUnset
	}
	id := make([]byte, 16)
	rand.Read(id)
	pcrs := slices.Clone(p.PCRs)
	slices.Sort(pcrs)
	pcrs = slices.Compact(pcrs)
	obj := fakeObject{secret: bytes.Clone(secret), gen: p.Generation, pcrs: map[int][sha256.Size]byte{}}
	for _, i := range pcrs {
		obj.pcrs[i] = f.st.pcrs[i]
	}
	f.st.objects[string(id)] = obj
	return &tpm.Sealed{Public: append([]byte("fake-public:"), id...), Private: id, Generation: p.Generation, PCRs: pcrs}, nil
}

func (f *fakeTPM) Unseal(s *tpm.Sealed) ([]byte, error) {
	unlock, err := f.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	obj, ok := f.st.objects[string(s.Private)]
	if !ok || !bytes.Equal(s.Public, append([]byte("fake-public:"), s.Private...)) {
		return nil, tpm.ErrInvalidSealed
	}
	if obj.gen != f.st.counter {
		return nil, fmt.Errorf("unseal: %w", tpm.ErrCounterMoved)
	}
	for i, v := range obj.pcrs {
		if f.st.pcrs[i] != v {
			return nil, fmt.Errorf("unseal: PCR %d: %w", i, tpm.ErrPCRMismatch)
		}
	}
	return bytes.Clone(obj.secret), nil
}

func (f *fakeTPM) Generation() (uint64, error) {
	unlock, err := f.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	return f.st.counter, nil
}

func (f *fakeTPM) IncrementGeneration() (uint64, error) {
	unlock, err := f.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	f.st.counter++
	return f.st.counter, nil
}

func (f *fakeTPM) ExtendPCR(index int, digest []byte) error {
	unlock, err := f.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if index < 0 || index > 23 || len(digest) != sha256.Size {
		return errors.New("fake: bad extend")
	}
	f.st.pcrs[index] = sha256.Sum256(append(f.st.pcrs[index][:], digest...))
	return nil
}

func (f *fakeTPM) ReadPCR(index int) ([]byte, error) {
	unlock, err := f.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if index < 0 || index > 23 {
		return nil, errors.New("fake: bad PCR")
	}
	return bytes.Clone(f.st.pcrs[index][:]), nil
}

func (f *fakeTPM) Clock() (tpm.Clock, error) { return tpm.Clock{Safe: true}, nil }

func (f *fakeTPM) Close() error {
	f.closed = true
	return nil
}
