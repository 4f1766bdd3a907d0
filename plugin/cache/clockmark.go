package cache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ClockMarkFile holds, beside the snapshot, the highest TPM clock value the
// daemon has seen, authenticated like the records. Verdict ages are measured
// on the TPM's clock; a clock found behind this mark went back (a TPM
// simulator restarted, a TPM cleared), and no age measured on it can be
// trusted.
const ClockMarkFile = "clock.mark"

// ErrClockMark: the mark is damaged, forged, or written under another key
// or generation.
var ErrClockMark = errors.New("clock mark does not authenticate")

const clockMarkVersion = "sealgate-clock-mark-v1"

// ReadClockMark returns the highest TPM clock value recorded in dir under
// key and generation; ok is false when there is no mark yet.
func ReadClockMark(dir string, key []byte, generation uint64) (clock time.Duration, ok bool, err error) {
	f, err := os.Open(filepath.Join(dir, ClockMarkFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read clock mark: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return 0, false, fmt.Errorf("read clock mark: %w", err)
	}
	fields := strings.Fields(string(b))
	if len(fields) != 4 || fields[0] != clockMarkVersion {
		return 0, false, fmt.Errorf("%w: %s is malformed", ErrClockMark, f.Name())
	}
	var gen, ms uint64
	if _, err := fmt.Sscan(fields[1], &gen); err != nil {
		return 0, false, fmt.Errorf("%w: %s is malformed", ErrClockMark, f.Name())
	}
	if _, err := fmt.Sscan(fields[2], &ms); err != nil {
		return 0, false, fmt.Errorf("%w: %s is malformed", ErrClockMark, f.Name())
	}
	want := clockMarkMAC(key, gen, ms)
	got, err := hex.DecodeString(fields[3])
	if err != nil || !hmac.Equal(got, want) {
		return 0, false, fmt.Errorf("%w: %s", ErrClockMark, f.Name())
	}
	if gen != generation {
		return 0, false, fmt.Errorf("%w: %s is of trust generation %d, not %d", ErrClockMark, f.Name(), gen, generation)
	}
	return time.Duration(ms) * time.Millisecond, true, nil
}

// WriteClockMark records clock as the highest TPM clock value seen,
// atomically.
func WriteClockMark(dir string, key []byte, generation uint64, clock time.Duration) error {
	ms := uint64(clock / time.Millisecond)
	line := fmt.Sprintf("%s %d %d %s\n", clockMarkVersion, generation, ms, hex.EncodeToString(clockMarkMAC(key, generation, ms)))
	tmp, err := os.CreateTemp(dir, ".clock-*.tmp")
	if err != nil {
		return fmt.Errorf("write clock mark: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(line); err != nil {
		tmp.Close()
		return fmt.Errorf("write clock mark: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write clock mark: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write clock mark: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, ClockMarkFile)); err != nil {
		return fmt.Errorf("write clock mark: %w", err)
	}
	return nil
}

func clockMarkMAC(key []byte, generation, ms uint64) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(clockMarkVersion))
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], generation)
	binary.BigEndian.PutUint64(b[8:], ms)
	m.Write(b[:])
	return m.Sum(nil)
}
