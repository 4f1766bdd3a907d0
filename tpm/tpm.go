// Package tpm is sealgate's sealing backend: it seals the trust-store key to
// the node's TPM, keeps the trust generation in an NV counter, measures the
// trust store into a PCR and reads the TPM's clock. It speaks to the TPM
// through go-tpm's tpm2 direct API. The package never logs. Errors an
// operator may meet wrap the sentinels below, with a message that says what
// to do.
//
// # Transports
//
// Open takes one spec string, as the --tpm flag gives it:
//
//   - "" or "/dev/tpmrm0" (any path under /dev): the kernel's TPM device. The
//     resource manager (/dev/tpmrm0) is the default because it lets several
//     programs (the daemon, `sealgate trust status`, tpm2-tools) share the
//     TPM; /dev/tpm0 works too when nothing else holds it.
//   - "swtpm:HOST:PORT": swtpm's server socket (swtpm socket --tpm2 --server
//     type=tcp,port=PORT --flags not-need-init,startup-clear). swtpm's server
//     socket carries raw TPM 2.0 command and response buffers, so the
//     transport writes a command and reads one response framed by the size
//     in its header. swtpm serves one connection at a time, so the
//     transport connects for each operation and disconnects after it: a
//     running daemon does not lock `sealgate trust status` out.
//
// Wrap turns any go-tpm transport into a TPM; package tpmsim, which only
// tests import, wraps the in-process reference simulator with it, so that
// the sealgate binary does not link the simulator (nor libcrypto).
//
// # The counter and the policy
//
// The trust generation is an NV counter (TPMA_NV_COUNTER) at
// DefaultCounterIndex, 0x0135EA16, in the TPM-owner range of the TCG handle
// registry (WithCounterIndex chooses another). It is defined on the first
// IncrementGeneration with owner authorization: written with owner
// authorization, readable with its own (empty) authorization value, NoDA so
// that reads never count toward dictionary-attack lockout. A TPM counter
// only goes up, and a counter defined again after being deleted starts
// above the highest value any counter on the TPM ever held, so the
// generation cannot be wound back, not even by the TPM owner.
//
// Seal creates a sealed data object (KeyedHash) under the owner
// hierarchy's ECC P-256 storage key (the TCG SRK template, created for each
// operation and flushed: no persistent handle to provision). The object has
// NoDA and userWithAuth clear, so its empty authorization value unseals
// nothing; its authPolicy is
//
//	PolicyNV(counter, offset 0, operandB = generation as 8 bytes big-endian, EQ)
//	[ PolicyPCR(SHA-256 bank, the chosen PCRs, their values at sealing) ]
//
// computed by the TPM in a trial session. The policy names the counter by
// its TPM name, which covers its attributes, so a look-alike index defined
// in its place does not satisfy it. Unseal replays the policy in a policy
// session salted with the storage key, with the response encrypted, so the
// secret does not cross the bus or the socket in clear. A failed PolicyNV
// means the counter moved on (ErrCounterMoved); a failed policy check after
// PolicyNV passed means the PCRs changed (ErrPCRMismatch).
//
// Every transient object and session is flushed before an operation
// returns, on error paths too: swtpm and /dev/tpm0 have no resource
// manager, and a leaked handle there stays until the TPM restarts.
package tpm

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// TPM is what sealgate needs of a TPM. Implementations flush every
// transient handle they create, on error paths too (swtpm has no resource
// manager). The methods are safe for concurrent use.
type TPM interface {
	// Seal seals secret (1 to MaxSecretSize bytes) under an ECC storage key
	// so that it unseals only while the trust-generation counter equals
	// p.Generation and, when p.PCRs is set, while those PCRs hold the values
	// they hold now. The object has NoDA set. The counter must have been
	// incremented at least once, and p.Generation must not be below it
	// (such a secret could never unseal: ErrCounterMoved).
	Seal(secret []byte, p Policy) (*Sealed, error)
	// Unseal returns the secret, or an error wrapping ErrCounterMoved,
	// ErrPCRMismatch, ErrLockout or ErrInvalidSealed when it cannot.
	Unseal(s *Sealed) ([]byte, error)
	// Generation reads the trust-generation NV counter. A counter that is
	// not defined yet, or never incremented, reads as 0. Reading never
	// defines it, so that status commands change nothing.
	Generation() (uint64, error)
	// IncrementGeneration increments the counter, defining it at first use,
	// and returns the new value. The first value of a new counter is above
	// every value a counter on this TPM ever held (1 on a fresh TPM).
	IncrementGeneration() (uint64, error)
	// ExtendPCR extends SHA-256 PCR index (0 to 23) with a 32-byte digest.
	ExtendPCR(index int, digest []byte) error
	// ReadPCR reads SHA-256 PCR index (0 to 23).
	ReadPCR(index int) ([]byte, error)
	// Clock reads the TPM's clock, which only moves forward while the TPM
	// is powered and cannot be set back by the host.
	Clock() (Clock, error)
	// Close releases the transport. Later calls fail.
	Close() error
}

// Policy is what a sealed secret is bound to.
type Policy struct {
	// Generation is the value the trust-generation counter must hold.
	Generation uint64
	// PCRs are SHA-256 PCR indexes (0 to 23) whose current values the
	// secret is bound to; empty binds to none. Order and repeats do not
	// matter.
	PCRs []int
}

// Sealed is a sealed secret as stored on disk (JSON), with what it was
// bound to, so that a failure to unseal can be explained. Only Public and
// Private decide anything: the TPM enforces the policy inside the object;
// the other fields are what the policy is replayed with and what messages
// quote. ParseSealed reads one from untrusted bytes.
type Sealed struct {
	// Public is the TPM2B_PUBLIC of the sealed object.
	Public []byte `json:"public"`
	// Private is the TPM2B_PRIVATE of the sealed object, encrypted and
	// integrity-protected by the storage key of the TPM that sealed it.
	Private []byte `json:"private"`
	// Generation is the counter value the object was sealed to.
	Generation uint64 `json:"generation"`
	// PCRs are the SHA-256 PCRs the object was sealed to, ascending.
	PCRs []int `json:"pcrs,omitempty"`
	// PCRValues are the values PCRs held at sealing, in the order of PCRs;
	// only used to say which PCR changed.
	PCRValues [][]byte `json:"pcrValues,omitempty"`
	// CounterIndex is the NV index of the counter the object was sealed
	// against; 0 in files written before it was recorded.
	CounterIndex uint32 `json:"counterIndex,omitempty"`
}

// Clock is a reading of the TPM's clock.
type Clock struct {
	// Clock is the time the TPM has been powered since it was last
	// cleared; it survives reboots and never goes back.
	Clock time.Duration
	// ResetCount counts TPM resets (reboots).
	ResetCount uint32
	// Safe is false when the clock may have lost time (the TPM lost power
	// without saving it); an age measured across such a reading is not
	// trusted.
	Safe bool
}

// Sentinels callers branch on.
var (
	// ErrNoTPM: the TPM device or socket is not there, or stopped answering.
	ErrNoTPM = errors.New("no TPM")
	// ErrCounterMoved: the trust-generation counter no longer holds the
	// generation the secret was sealed at (a newer seal happened, or the
	// counter is gone because the TPM was cleared).
	ErrCounterMoved = errors.New("trust generation counter moved on")
	// ErrPCRMismatch: the bound PCRs hold other values than at sealing.
	ErrPCRMismatch = errors.New("PCR values changed")
	// ErrLockout: the TPM is in dictionary-attack lockout.
	ErrLockout = errors.New("TPM in lockout")
	// ErrInvalidSealed: the sealed file is malformed, was altered, or was
	// not sealed by this TPM (another node, or the TPM was cleared since).
	ErrInvalidSealed = errors.New("invalid sealed secret")
	// ErrCounterUnset: Seal was asked to seal before the counter was ever
	// incremented; increment it first.
	ErrCounterUnset = errors.New("trust generation counter not initialized")
)

// DefaultCounterIndex is the NV index of the trust-generation counter:
// 0x0135EA16, in the range 0x01000000-0x013FFFFF the TCG handle registry
// leaves to the TPM owner.
const DefaultCounterIndex uint32 = 0x0135EA16

// DefaultDevice is the TPM device Open uses for an empty spec.
const DefaultDevice = "/dev/tpmrm0"

// MaxSecretSize is the largest secret Seal accepts (MAX_SYM_DATA).
const MaxSecretSize = 128

// defaultTimeout bounds one command on a socket transport.
const defaultTimeout = 10 * time.Second

// Option configures Open, Wrap and Simulator.Open.
type Option func(*options)

type options struct {
	counterIndex uint32
	ownerAuth    []byte
	timeout      time.Duration
}

func defaultOptions() options {
	return options{counterIndex: DefaultCounterIndex, timeout: defaultTimeout}
}

// WithCounterIndex sets the NV index of the trust-generation counter (an
// NV index handle, 0x01000000 to 0x01FFFFFF), for a node whose default
// index is taken by something else.
func WithCounterIndex(index uint32) Option {
	return func(o *options) { o.counterIndex = index }
}

// WithOwnerAuth sets the owner hierarchy's authorization value, needed to
// create the storage key and to define and increment the counter on a TPM
// whose owner authorization is set (it is empty on most nodes).
func WithOwnerAuth(auth []byte) Option {
	return func(o *options) { o.ownerAuth = append([]byte(nil), auth...) }
}

// WithTimeout bounds each TPM command on the swtpm socket transport
// (default 10s), so that a hung swtpm fails the start-up instead of
// hanging it.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

func buildOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.counterIndex>>24 != uint32(tpm2.TPMHTNVIndex) {
		return o, fmt.Errorf("counter index %#08x is not an NV index handle (0x01000000 to 0x01FFFFFF)", o.counterIndex)
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("timeout %v must be positive", o.timeout)
	}
	return o, nil
}

// Hints quoted in ErrNoTPM messages: the flag names are cmd/sealgate's.
const noTPMHint = "run with --tpm swtpm:HOST:PORT for a software TPM, or with --insecure-no-tpm to run " +
	"without one (then anyone who can write the disk can change the trust store, roll it back or forge cached verdicts)"

// Open opens the TPM that spec names: "" or a path under /dev (the kernel
// device; "" means DefaultDevice) or "swtpm:HOST:PORT" (swtpm's TCP server
// socket). A TPM that is not there gives an error wrapping ErrNoTPM. Open sends one command to check
// that the TPM answers, and starts it up if it was never started.
func Open(spec string, opts ...Option) (TPM, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("open TPM: %w", err)
	}
	switch {
	case spec == "" || strings.HasPrefix(spec, "/dev/"):
		if spec == "" {
			spec = DefaultDevice
		}
		return openDevice(spec, o)
	case strings.HasPrefix(spec, "swtpm:"):
		return openSwtpm(spec, strings.TrimPrefix(spec, "swtpm:"), o)
	default:
		return nil, fmt.Errorf("open TPM: unknown TPM %q: want a device path (%s) or swtpm:HOST:PORT", spec, DefaultDevice)
	}
}

func openDevice(path string, o options) (TPM, error) {
	t, err := linuxtpm.Open(path)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%w at %s: this node has no TPM device (or its driver is not loaded): %s", ErrNoTPM, path, noTPMHint)
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("open TPM %s: %w: run as root or as a member of the group that owns it (tss)", path, err)
	case errors.Is(err, syscall.EBUSY):
		return nil, fmt.Errorf("open TPM %s: %w: another program holds it; use the resource manager, %s", path, err, DefaultDevice)
	default:
		return nil, fmt.Errorf("open TPM %s: %w", path, err)
	}
	d := newDevice(t, t.Close, path, o)
	if err := d.probe(); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	return d, nil
}

func openSwtpm(spec, addr string, o options) (TPM, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("open TPM %q: want swtpm:HOST:PORT", spec)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return nil, fmt.Errorf("open TPM %q: bad port %q", spec, port)
	}
	c := &swtpmConn{addr: addr, timeout: o.timeout}
	d := newDevice(c, c.Close, spec, o)
	d.idle = c.disconnect
	if err := d.probe(); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return d, nil
}

// Wrap makes a TPM of a go-tpm transport, for TPMs reached some other way
// (a test's own simulator, a future transport). Close closes t. Unlike Open
// it sends nothing to the TPM until used.
func Wrap(t transport.TPMCloser, opts ...Option) (TPM, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("wrap TPM: %w", err)
	}
	return newDevice(t, t.Close, "TPM", o), nil
}

// device implements TPM over one go-tpm transport.
type device struct {
	mu     sync.Mutex
	t      transport.TPM
	closer func() error
	// idle, when set, is called after each operation (the swtpm transport
	// disconnects so that other clients can connect).
	idle   func()
	name   string
	opts   options
	closed bool
}

var _ TPM = (*device)(nil)

func newDevice(t transport.TPM, closer func() error, name string, o options) *device {
	return &device{t: t, closer: closer, name: name, opts: o}
}

// begin locks the device for one operation; the returned func ends it.
func (d *device) begin() (func(), error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, fmt.Errorf("TPM %s is closed", d.name)
	}
	return func() {
		if d.idle != nil {
			d.idle()
		}
		d.mu.Unlock()
	}, nil
}

// Close implements TPM.
func (d *device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return d.closer()
}

// probe checks that the TPM answers, starting it up when it says it was
// never started (a swtpm run without a startup flag).
func (d *device) probe() error {
	end, err := d.begin()
	if err != nil {
		return err
	}
	defer end()
	_, err = tpm2.ReadClock{}.Execute(d.t)
	if errors.Is(err, tpm2.TPMRCInitialize) {
		if _, err = (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(d.t); err != nil {
			return fmt.Errorf("open TPM %s: startup: %w", d.name, err)
		}
		_, err = tpm2.ReadClock{}.Execute(d.t)
	}
	if errors.Is(err, tpm2.TPMRCFailure) && strings.HasPrefix(d.name, "swtpm:") {
		return fmt.Errorf("open TPM %s: %w: swtpm is not initialized; start it with --flags not-need-init,startup-clear", d.name, err)
	}
	if err != nil {
		return fmt.Errorf("open TPM %s: %w", d.name, translate(err))
	}
	return nil
}
