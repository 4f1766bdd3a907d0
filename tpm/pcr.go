package tpm

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// MaxPCR is the highest PCR index this package reads, extends or binds
// to: PC Client TPMs have 24 PCRs.
const MaxPCR = 23

func checkPCR(index int) error {
	if index < 0 || index > MaxPCR {
		return fmt.Errorf("PCR %d out of range 0 to %d", index, MaxPCR)
	}
	return nil
}

// normalizePCRs checks and sorts a PCR list and drops repeats.
func normalizePCRs(pcrs []int) ([]int, error) {
	out := slices.Clone(pcrs)
	for _, p := range out {
		if err := checkPCR(p); err != nil {
			return nil, err
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ExtendPCR implements TPM.
func (d *device) ExtendPCR(index int, digest []byte) error {
	if err := checkPCR(index); err != nil {
		return fmt.Errorf("extend PCR: %w", err)
	}
	if len(digest) != sha256.Size {
		return fmt.Errorf("extend PCR %d: digest of %d bytes, want %d (SHA-256)", index, len(digest), sha256.Size)
	}
	end, err := d.begin()
	if err != nil {
		return err
	}
	defer end()
	_, err = tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256,
			Digest:  digest,
		}}},
	}.Execute(d.t)
	if err != nil {
		return fmt.Errorf("extend PCR %d: %w", index, translate(err))
	}
	return nil
}

// ReadPCR implements TPM.
func (d *device) ReadPCR(index int) ([]byte, error) {
	if err := checkPCR(index); err != nil {
		return nil, fmt.Errorf("read PCR: %w", err)
	}
	end, err := d.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	return d.readPCR(index)
}

func (d *device) readPCR(index int) ([]byte, error) {
	rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection([]int{index})}.Execute(d.t)
	if err != nil {
		return nil, fmt.Errorf("read PCR %d: %w", index, translate(err))
	}
	if len(rsp.PCRValues.Digests) != 1 || len(rsp.PCRValues.Digests[0].Buffer) != sha256.Size {
		return nil, fmt.Errorf("read PCR %d: the TPM has no SHA-256 value for it (is the SHA-256 PCR bank allocated?)", index)
	}
	return rsp.PCRValues.Digests[0].Buffer, nil
}

// Clock implements TPM.
func (d *device) Clock() (Clock, error) {
	end, err := d.begin()
	if err != nil {
		return Clock{}, err
	}
	defer end()
	rsp, err := tpm2.ReadClock{}.Execute(d.t)
	if err != nil {
		return Clock{}, fmt.Errorf("read TPM clock: %w", translate(err))
	}
	ci := rsp.CurrentTime.ClockInfo
	return Clock{
		Clock:      time.Duration(ci.Clock) * time.Millisecond,
		ResetCount: ci.ResetCount,
		Safe:       ci.Safe,
	}, nil
}
