package trust

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/internal/strictjson"
	"github.com/sealgate/sealgate/tpm"
)

// RecordVersion is the seal record format this package writes and reads.
const RecordVersion = 1

// maxRecordSize bounds the seal record read from disk: maxFiles entries of
// a few hundred bytes each, with room to spare.
const maxRecordSize = 4 << 20

// maxSealedBlob bounds each of the sealed object's public and private areas
// (a TPM2B is at most a few hundred bytes for a sealed 32-byte secret).
const maxSealedBlob = 4 << 10

// recordMACInfo is the HKDF info of the key that authenticates the record.
const recordMACInfo = "sealgate trust store v1"

// recordMACDomain starts the MAC's input and versions its framing.
const recordMACDomain = "sealgate trust store record v1\x00"

// Record is the seal record, sealed.json. Everything in it is covered by
// MAC, so a record edited by someone without the TPM fails to open.
type Record struct {
	Version    int       `json:"version"`
	Generation uint64    `json:"generation"`
	SealedAt   time.Time `json:"sealedAt"`
	// MeasurePCR is the PCR the store digest was extended into; -1 for none.
	MeasurePCR int `json:"measurePCR"`
	// BindPCRs are the PCRs the key is sealed to, ascending.
	BindPCRs []int `json:"bindPCRs"`
	// Sealed is K, sealed by the TPM at Generation.
	Sealed tpm.Sealed `json:"sealed"`
	// Files are the trust store's files, sorted by path.
	Files []File `json:"files"`
	// Digest is StoreDigest(Files).
	Digest string `json:"digest"`
	// MAC is the lower-case hex HMAC-SHA256 of the record's other fields.
	MAC string `json:"mac"`
}

// ParseRecord parses a seal record strictly (an unknown field, trailing
// data, or a value out of range is an error wrapping ErrRecord) and checks
// that it is consistent. It does not check the MAC, which needs the key.
func ParseRecord(data []byte) (*Record, error) {
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrRecord, maxRecordSize)
	}
	var r Record
	if err := strictjson.Unmarshal(data, &r, 8); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	return &r, nil
}

func (r *Record) check() error {
	switch {
	case r.Version != RecordVersion:
		return fmt.Errorf("version %d; this sealgate reads version %d (was it written by another release?)", r.Version, RecordVersion)
	case r.Generation == 0:
		return errors.New("generation 0; a sealed store has generation 1 or more")
	case r.SealedAt.IsZero():
		return errors.New("no sealedAt")
	case len(r.Sealed.Public) == 0 || len(r.Sealed.Private) == 0:
		return errors.New("no sealed key")
	case len(r.Sealed.Public) > maxSealedBlob || len(r.Sealed.Private) > maxSealedBlob:
		return fmt.Errorf("sealed key larger than %d bytes", maxSealedBlob)
	case r.Sealed.Generation != r.Generation:
		return fmt.Errorf("the key is sealed at generation %d, the record says %d", r.Sealed.Generation, r.Generation)
	case !slices.Equal(r.Sealed.PCRs, r.BindPCRs):
		return fmt.Errorf("the key is sealed to PCRs %v, the record says %v", r.Sealed.PCRs, r.BindPCRs)
	case len(r.Files) > maxFiles:
		return fmt.Errorf("more than %d files", maxFiles)
	case len(r.MAC) != 2*sha256.Size || !isLowerHex(r.MAC):
		return errors.New("mac is not 64 lower-case hex digits")
	}
	if err := checkPCRs(r.MeasurePCR, r.BindPCRs); err != nil {
		return err
	}
	for i, f := range r.Files {
		switch {
		case !validPath(f.Path):
			return fmt.Errorf("files[%d]: invalid path %.80q", i, f.Path)
		case i > 0 && r.Files[i-1].Path >= f.Path:
			return fmt.Errorf("files[%d]: %s is out of order or listed twice", i, f.Path)
		case len(f.SHA256) != 2*sha256.Size || !isLowerHex(f.SHA256):
			return fmt.Errorf("files[%d]: sha256 of %s is not 64 lower-case hex digits", i, f.Path)
		case f.Size < 0 || f.Size > maxFileSize:
			return fmt.Errorf("files[%d]: size of %s out of range", i, f.Path)
		}
	}
	d, err := StoreDigest(r.Files)
	if err != nil {
		return err
	}
	if d != r.Digest {
		return fmt.Errorf("digest %.80q is not the digest of the files listed", r.Digest)
	}
	return nil
}

// checkPCRs checks a measurement PCR (-1 for none) and the PCRs a key is
// bound to (ascending, no duplicates).
func checkPCRs(measure int, bind []int) error {
	if measure != NoMeasurement && (measure < minMeasurePCR || measure > maxPCR) {
		return fmt.Errorf("measurement PCR %d: use one of %d to %d (PCRs 0-7 hold the firmware's measurements, which other sealed secrets depend on), or -1 for none", measure, minMeasurePCR, maxPCR)
	}
	for i, p := range bind {
		switch {
		case p < 0 || p > maxPCR:
			return fmt.Errorf("bind PCR %d: a PCR is 0 to %d", p, maxPCR)
		case i > 0 && bind[i-1] >= p:
			return fmt.Errorf("bind PCRs %v: not ascending or listed twice", bind)
		case p == measure:
			return fmt.Errorf("PCR %d is both measured into and bound to: the key would never unseal after the measurement; bind to other PCRs or measure into another", p)
		}
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// macKey derives the record's MAC key from K.
func macKey(k []byte) []byte { return derive(k, recordMACInfo) }

// derive is HKDF-SHA256 (no salt: K is uniformly random) of 32 bytes.
func derive(k []byte, info string) []byte {
	out, err := hkdf.Key(sha256.New, k, nil, info, 32)
	if err != nil {
		// Only a length over 255*32 bytes fails.
		panic("trust: hkdf: " + err.Error())
	}
	return out
}

// computeMAC is HMAC-SHA256 under macKey(k) over every field but MAC, each
// length-prefixed, in a fixed order: not over the file's JSON, whose bytes
// are free to vary (spacing, key order) without changing what is sealed.
func (r *Record) computeMAC(k []byte) string {
	m := hmac.New(sha256.New, macKey(k))
	m.Write([]byte(recordMACDomain))
	writeUint(m, uint64(r.Version))
	writeUint(m, r.Generation)
	writeUint(m, uint64(r.SealedAt.Unix()))
	writeUint(m, uint64(r.SealedAt.Nanosecond()))
	writeUint(m, uint64(int64(r.MeasurePCR)))
	writeInts(m, r.BindPCRs)
	// The sealed object as the tpm package encodes it, so that every field
	// it has (and any it gains) is covered.
	sealed, err := json.Marshal(&r.Sealed)
	if err != nil {
		panic("trust: encode sealed key: " + err.Error()) // only []byte, ints and slices
	}
	writeField(m, sealed)
	writeUint(m, uint64(len(r.Files)))
	for _, f := range r.Files {
		writeField(m, []byte(f.Path))
		writeField(m, []byte(f.SHA256))
		writeUint(m, uint64(f.Size))
	}
	writeField(m, []byte(r.Digest))
	return hex.EncodeToString(m.Sum(nil))
}

func writeInts(h hash.Hash, v []int) {
	writeUint(h, uint64(len(v)))
	for _, x := range v {
		writeUint(h, uint64(int64(x)))
	}
}

// verifyMAC reports whether the record's MAC is right for k, in constant
// time.
func (r *Record) verifyMAC(k []byte) bool {
	return hmac.Equal([]byte(r.computeMAC(k)), []byte(r.MAC))
}

// readRecord reads dir/sealed.json, bounded, and parses it. A missing
// record wraps ErrNotSealed.
func readRecord(dir string) (*Record, error) {
	p := filepath.Join(dir, RecordName)
	// O_NOFOLLOW: a link in place of the record is refused, not followed.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s has no %s; run `sealgate trust seal --trust-dir %s`", ErrNotSealed, dir, RecordName, dir)
	case errors.Is(err, syscall.ELOOP):
		return nil, fmt.Errorf("%w: %s is a symbolic link; remove it and run `sealgate trust seal`", ErrRecord, p)
	case err != nil:
		return nil, fmt.Errorf("read seal record: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("read seal record: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file; remove it and run `sealgate trust seal`", ErrRecord, p)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("read seal record: %w", err)
	}
	r, err := ParseRecord(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; run `sealgate trust seal` to write a new one", p, err)
	}
	return r, nil
}
