// Package tpmsim is an in-process TPM for tests: the Microsoft reference
// implementation through go-tpm-tools, compiled with cgo (and libcrypto).
// It lives apart from package tpm so that the sealgate binary, which never
// needs it, does not link it; only tests import it. It does not import
// package tpm either (whose own tests use it): tpm.Wrap(sim.Transport())
// makes a TPM of it.
package tpmsim

import (
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpmutil"
)

// ErrClosed is returned for a command sent after Close.
var ErrClosed = errors.New("the TPM simulator was closed")

// Simulator is one simulated TPM. It outlives the TPM handles opened on
// it, so that a test can stop and start a daemon against the same TPM
// (Open again), or reboot it (Reboot). Only one Simulator exists in a
// process at a time: New waits until the previous one is closed.
type Simulator struct {
	mu  sync.Mutex
	sim *simulator.Simulator
}

// New starts a freshly manufactured simulated TPM.
func New() (*Simulator, error) {
	sim, err := simulator.Get()
	if err != nil {
		return nil, fmt.Errorf("start TPM simulator: %w", err)
	}
	return &Simulator{sim: sim}, nil
}

// Transport is a connection to the simulator, for tpm.Wrap. Closing it
// leaves the simulator running, as a daemon's exit leaves the node's TPM.
func (s *Simulator) Transport() transport.TPMCloser { return &conn{s: s} }

// Reboot resets the simulated TPM as a reboot of the node would: PCRs
// return to zero, ResetCount goes up, transient objects and sessions are
// gone; NV (the counter) and the storage hierarchy remain.
func (s *Simulator) Reboot() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sim == nil {
		return errors.New("TPM simulator is closed")
	}
	if err := s.sim.Reset(); err != nil {
		return fmt.Errorf("reboot TPM simulator: %w", err)
	}
	return nil
}

// Close stops the simulator; TPMs opened on it fail from then on.
func (s *Simulator) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sim == nil {
		return nil
	}
	err := s.sim.Close()
	s.sim = nil
	return err
}

// conn is one TPM's transport to a Simulator; the Simulator's lock keeps a
// command and its response together when several TPMs share it.
type conn struct{ s *Simulator }

func (c *conn) Send(cmd []byte) ([]byte, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.sim == nil {
		return nil, ErrClosed
	}
	return tpmutil.RunCommandRaw(c.s.sim, cmd)
}

// Close leaves the simulator running.
func (c *conn) Close() error { return nil }
