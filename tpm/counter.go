package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// counterAttributes are the attributes sealgate defines its counter with.
// An index found at the counter's handle with other attributes is someone
// else's, and is neither used nor touched.
var counterAttributes = tpm2.TPMANV{
	OwnerWrite: true,
	AuthRead:   true,
	OwnerRead:  true,
	NoDA:       true,
	NT:         tpm2.TPMNTCounter,
}

// counterSize is the size of an NV counter, fixed by the TPM.
const counterSize = 8

// counter is the state of the trust-generation NV index.
type counter struct {
	handle  tpm2.TPMHandle
	defined bool
	// written is false until the first increment: the index cannot be
	// read, and its name differs from the one it will have.
	written bool
	name    tpm2.TPM2BName
	value   uint64
}

// authRead is the authorization that reads the counter: its own, empty,
// authorization value (TPMA_NV_AUTHREAD), so that reading needs no owner
// password.
func (c *counter) authRead() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: c.handle, Name: c.name, Auth: tpm2.PasswordAuth(nil)}
}

func (c *counter) named() tpm2.NamedHandle {
	return tpm2.NamedHandle{Handle: c.handle, Name: c.name}
}

// readCounter reads the counter's public area and, when it was written,
// its value.
func (d *device) readCounter() (*counter, error) {
	c := &counter{handle: tpm2.TPMHandle(d.opts.counterIndex)}
	rsp, err := tpm2.NVReadPublic{NVIndex: c.handle}.Execute(d.t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read counter %#08x: %w", d.opts.counterIndex, translate(err))
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("read counter %#08x: %w", d.opts.counterIndex, err)
	}
	attrs := pub.Attributes
	attrs.Written = false
	if attrs != counterAttributes || pub.NameAlg != tpm2.TPMAlgSHA256 || pub.DataSize != counterSize || len(pub.AuthPolicy.Buffer) != 0 {
		return nil, fmt.Errorf("NV index %#08x exists but is not sealgate's trust generation counter (attributes %#08x, size %d): "+
			"another program uses it; choose another index for sealgate", d.opts.counterIndex, binary.BigEndian.Uint32(tpm2.Marshal(pub.Attributes)), pub.DataSize)
	}
	c.defined = true
	c.name = rsp.NVName
	c.written = pub.Attributes.Written
	if !c.written {
		return c, nil
	}
	data, err := tpm2.NVRead{AuthHandle: c.authRead(), NVIndex: c.named(), Size: counterSize}.Execute(d.t)
	if err != nil {
		return nil, fmt.Errorf("read counter %#08x: %w", d.opts.counterIndex, translate(err))
	}
	if len(data.Data.Buffer) != counterSize {
		return nil, fmt.Errorf("read counter %#08x: %d bytes, want %d", d.opts.counterIndex, len(data.Data.Buffer), counterSize)
	}
	c.value = binary.BigEndian.Uint64(data.Data.Buffer)
	return c, nil
}

// Generation implements TPM.
func (d *device) Generation() (uint64, error) {
	end, err := d.begin()
	if err != nil {
		return 0, err
	}
	defer end()
	c, err := d.readCounter()
	if err != nil {
		return 0, fmt.Errorf("generation: %w", err)
	}
	return c.value, nil
}

// IncrementGeneration implements TPM.
func (d *device) IncrementGeneration() (uint64, error) {
	end, err := d.begin()
	if err != nil {
		return 0, err
	}
	defer end()
	c, err := d.readCounter()
	if err != nil {
		return 0, fmt.Errorf("increment generation: %w", err)
	}
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(d.opts.ownerAuth)}
	if !c.defined {
		def := tpm2.NVDefineSpace{
			AuthHandle: owner,
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex:    c.handle,
				NameAlg:    tpm2.TPMAlgSHA256,
				Attributes: counterAttributes,
				DataSize:   counterSize,
			}),
		}
		if _, err := def.Execute(d.t); err != nil {
			return 0, fmt.Errorf("increment generation: define counter %#08x: %w", d.opts.counterIndex, translateOwner(err))
		}
		if c, err = d.readCounter(); err != nil {
			return 0, fmt.Errorf("increment generation: %w", err)
		}
	}
	if _, err := (tpm2.NVIncrement{AuthHandle: owner, NVIndex: c.named()}).Execute(d.t); err != nil {
		return 0, fmt.Errorf("increment generation: %w", translateOwner(err))
	}
	after, err := d.readCounter()
	if err != nil {
		return 0, fmt.Errorf("increment generation: %w", err)
	}
	if after.value <= c.value {
		return 0, fmt.Errorf("increment generation: counter %#08x went from %d to %d", d.opts.counterIndex, c.value, after.value)
	}
	return after.value, nil
}

// translate turns the TPM errors an operator can act on into messages
// that say what to do, wrapping the sentinels callers branch on.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tpm2.TPMRCLockout):
		return fmt.Errorf("%w (%v): it refuses authorizations after too many failed attempts; wait for the lockout to end, "+
			"or clear it with the lockout authorization (tpm2_dictionarylockout --clear-lockout)", ErrLockout, err)
	case errors.Is(err, tpm2.TPMRCNVRate):
		return fmt.Errorf("%w: the TPM is limiting the rate of NV writes; try again in a minute", err)
	case errors.Is(err, tpm2.TPMRCLocality):
		return fmt.Errorf("%w: this PCR cannot be extended from the locality the host uses; choose a PCR from 0 to 16 or 23", err)
	}
	return err
}

// translateOwner is translate for commands authorized by the owner
// hierarchy.
func translateOwner(err error) error {
	if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) {
		return fmt.Errorf("%w: the TPM owner authorization was refused: the owner password is set on this TPM; give it to sealgate", err)
	}
	if errors.Is(err, tpm2.TPMRCHierarchy) {
		return fmt.Errorf("%w: the owner hierarchy is disabled on this TPM; enable it in the firmware settings", err)
	}
	if errors.Is(err, tpm2.TPMRCNVSpace) {
		return fmt.Errorf("%w: the TPM has no NV space left for the counter", err)
	}
	return translate(err)
}
