package node

import (
	"sync"
	"sync/atomic"

	"github.com/sealgate/sealgate/plugin/metrics"
	"github.com/sealgate/sealgate/tpm"
)

// tpmOps counts the daemon's TPM operations and their failures by
// operation, for the metrics endpoint.
type tpmOps struct{ m sync.Map } // op -> *opCount

type opCount struct{ total, errors atomic.Int64 }

func (o *tpmOps) add(op string, err error) {
	v, _ := o.m.LoadOrStore(op, &opCount{})
	c := v.(*opCount)
	c.total.Add(1)
	if err != nil {
		c.errors.Add(1)
	}
}

func (o *tpmOps) snapshot() map[string]metrics.TPMCount {
	out := map[string]metrics.TPMCount{}
	o.m.Range(func(k, v any) bool {
		c := v.(*opCount)
		out[k.(string)] = metrics.TPMCount{Total: c.total.Load(), Errors: c.errors.Load()}
		return true
	})
	return out
}

// countedTPM is a TPM whose every operation is counted.
type countedTPM struct {
	t   tpm.TPM
	ops *tpmOps
}

var _ tpm.TPM = countedTPM{}

// openTPM opens the node's TPM, counting the opening and every operation.
func (n *Node) openTPM() (tpm.TPM, error) {
	t, err := tpm.Open(n.cfg.TPM)
	n.tpmOps.add("open", err)
	if err != nil {
		return nil, err
	}
	return countedTPM{t: t, ops: &n.tpmOps}, nil
}

func (c countedTPM) Seal(secret []byte, p tpm.Policy) (*tpm.Sealed, error) {
	s, err := c.t.Seal(secret, p)
	c.ops.add("seal", err)
	return s, err
}

func (c countedTPM) Unseal(s *tpm.Sealed) ([]byte, error) {
	b, err := c.t.Unseal(s)
	c.ops.add("unseal", err)
	return b, err
}

func (c countedTPM) Generation() (uint64, error) {
	g, err := c.t.Generation()
	c.ops.add("read_counter", err)
	return g, err
}

func (c countedTPM) IncrementGeneration() (uint64, error) {
	g, err := c.t.IncrementGeneration()
	c.ops.add("increment_counter", err)
	return g, err
}

func (c countedTPM) ExtendPCR(index int, digest []byte) error {
	err := c.t.ExtendPCR(index, digest)
	c.ops.add("extend_pcr", err)
	return err
}

func (c countedTPM) ReadPCR(index int) ([]byte, error) {
	v, err := c.t.ReadPCR(index)
	c.ops.add("read_pcr", err)
	return v, err
}

func (c countedTPM) Clock() (tpm.Clock, error) {
	v, err := c.t.Clock()
	c.ops.add("read_clock", err)
	return v, err
}

func (c countedTPM) Close() error { return c.t.Close() }
