package trust

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/tpm"
)

// PCR choices for the measurement of the store digest.
const (
	// DefaultMeasurePCR is PCR 23, the PC Client profile's "application
	// support" PCR: no firmware, boot loader or OS component measures into
	// it, so extending it disturbs nothing else sealed to PCRs (disk
	// encryption is typically bound to 7 or 11-15). Any process that may
	// send TPM commands can also reset it, so a quote of it is worth what
	// the node's root is; an operator who wants a PCR that only a reboot
	// resets chooses one of 8-15 that the OS leaves unused. After the first
	// measurement since boot it holds SHA-256(32 zero bytes || digest),
	// which a remote verifier can compare.
	DefaultMeasurePCR = 23
	// NoMeasurement leaves every PCR alone.
	NoMeasurement = -1

	minMeasurePCR = 8
	maxPCR        = 23
)

// PolicyName is the policy's file name inside the trust store.
const PolicyName = "policy.yaml"

// keySize is the size of K.
const keySize = 32

// SealOptions say how Seal binds and measures the trust store.
type SealOptions struct {
	// MeasurePCR is the SHA-256 PCR the store digest is extended into:
	// 0 means DefaultMeasurePCR (PCR 0 is the firmware's and never a
	// choice), NoMeasurement means none, otherwise 8 to 23.
	MeasurePCR int
	// BindPCRs are PCRs whose current values the key is sealed to, so that
	// it unseals only in the same boot state (e.g. 7 for the Secure Boot
	// policy). A change of those values (a firmware or boot loader update)
	// then needs a re-seal. Empty binds to none.
	BindPCRs []int
	// Now is the sealing time recorded; zero means time.Now().
	Now time.Time
}

// Seal checks the policy strictly, seals a fresh key to the TPM at the next
// trust generation and writes the seal record (sealed.json) atomically,
// naming the PCR the daemon measures the store digest into when it takes
// this seal (Opened.Measure): the PCR shows what the node enforces, not
// what was sealed and not yet taken. Every earlier record,
// with any trust store restored alongside it, stops opening: the counter
// has moved on.
//
// What is sealed is the policy and exactly the files it names. Seal refuses
// a policy that does not parse, that names a file outside the trust store
// (it would not be sealed), a symbolic link or a special file; those errors
// wrap ErrStore and
// leave the counter alone.
func Seal(dir string, t tpm.TPM, o SealOptions) (*Record, error) {
	measure := o.MeasurePCR
	if measure == 0 {
		measure = DefaultMeasurePCR
	}
	bind := slices.Clone(o.BindPCRs)
	slices.Sort(bind)
	bind = slices.Compact(bind)
	if err := checkPCRs(measure, bind); err != nil {
		return nil, fmt.Errorf("seal: %w: %w", ErrOptions, err)
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}

	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := os.Remove(filepath.Join(dir, tmpRecordName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("seal: remove a leftover %s: %w", tmpRecordName, err)
	}
	files, _, err := readSet(dir)
	if err != nil {
		return nil, fmt.Errorf("seal: %w (nothing was sealed)", err)
	}
	digest, err := StoreDigest(files)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}

	k := make([]byte, keySize)
	defer clear(k)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	gen, err := t.IncrementGeneration()
	if err != nil {
		return nil, fmt.Errorf("seal: increment the trust generation counter: %w", err)
	}
	sealed, err := t.Seal(k, tpm.Policy{Generation: gen, PCRs: bind})
	if err != nil {
		return nil, fmt.Errorf("seal: the trust generation counter is now %d, so the previous seal no longer opens, but sealing the new key failed; fix the cause and run `sealgate trust seal` again: %w", gen, err)
	}
	rec := &Record{
		Version:    RecordVersion,
		Generation: gen,
		SealedAt:   now.UTC().Truncate(time.Second),
		MeasurePCR: measure,
		BindPCRs:   bind,
		Sealed:     *sealed,
		Files:      files,
		Digest:     digest,
	}
	if rec.BindPCRs == nil {
		rec.BindPCRs = []int{}
	}
	// The TPM's Sealed must say what the record says; check it as Open
	// will, so that a seal that could never open fails here.
	rec.MAC = strings.Repeat("0", 64)
	if err := rec.check(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	rec.MAC = rec.computeMAC(k)
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if err := writeAtomic(dir, RecordName, append(data, '\n')); err != nil {
		return nil, fmt.Errorf("seal: the trust generation counter is now %d, so the previous seal no longer opens, but writing %s failed; fix the cause and run `sealgate trust seal` again: %w", gen, RecordName, err)
	}
	return rec, nil
}

// lockDir takes an exclusive advisory lock on the trust store's folder for
// the length of a seal, so that two seals at once cannot interleave their
// counter increments and records.
func lockDir(dir string) (func(), error) {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("seal: %w: %s does not exist; write a starter trust store with `sealgate trust init %s`", ErrStore, dir, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: open trust store: %w", err)
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("seal: another `sealgate trust seal` is sealing %s; wait for it and check with `sealgate trust status`", dir)
		}
		return nil, fmt.Errorf("seal: lock %s: %w", dir, err)
	}
	return func() { d.Close() }, nil
}

// writeAtomic replaces dir/name with data so that a crash or a power loss
// leaves either the old file or the new one, never a torn one: write a
// temporary file, fsync it, rename it over the old one, fsync the
// directory.
func writeAtomic(dir, name string, data []byte) (err error) {
	return writeAtomicAs(dir, name, tmpRecordName, data, 0o644)
}

// writeAtomicAs writes name in dir through the temporary file tmp (which
// must not exist), synced and renamed over name, then syncs dir.
func writeAtomicAs(dir, name, tmpName string, data []byte, mode os.FileMode) (err error) {
	tmp := filepath.Join(dir, tmpName)
	_ = os.Remove(tmp) // left by a crash; the rename is what commits
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
