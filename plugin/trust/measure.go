package trust

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sealgate/sealgate/internal/strictjson"
	"github.com/sealgate/sealgate/tpm"
)

// MeasurementLogName is the measurement log's file name in the daemon's
// state folder.
const MeasurementLogName = "measurements.json"

// measurementLogVersion is the log format's version.
const measurementLogVersion = 1

// maxMeasurementLogBytes bounds a measurement log read from disk or from
// an attestation.
const maxMeasurementLogBytes = 1 << 20

// maxMeasurementEvents bounds the events kept; past it the log starts
// again from the PCR's value, which keeps it replayable.
const maxMeasurementEvents = 1024

// ErrMeasurementLog wraps a measurement log that does not parse or does
// not replay to the PCR value it is checked against.
var ErrMeasurementLog = errors.New("measurement log")

// MeasurementLog says how the measurement PCR got its value: replaying
// Events from Start (v = SHA-256(v || digest) for each) gives it. Only the
// last event decides what a verifier learns: a PCR cannot be set, only
// extended, so a quoted value equal to SHA-256(previous || digest) shows
// that digest was the last one measured, whatever came before.
type MeasurementLog struct {
	Version int `json:"version"`
	// PCR is the SHA-256 PCR measured into.
	PCR int `json:"pcr"`
	// Start is the PCR's value, hex, when the log began: all zeros after a
	// reboot; another value when the daemon found the PCR extended by
	// something its log did not account for (a lost log, another program),
	// from which it went on.
	Start string `json:"start"`
	// Events are the trust stores measured, oldest first.
	Events []MeasurementEvent `json:"events"`
}

// MeasurementEvent is one trust store measured by the daemon as it took
// that store's seal.
type MeasurementEvent struct {
	// Digest is the trust store's digest ("sha256:<hex>"), the value
	// extended.
	Digest string `json:"digest"`
	// Generation is the trust generation of the seal.
	Generation uint64    `json:"generation"`
	Time       time.Time `json:"time"`
}

// Replay returns the value the log says the PCR holds.
func (l *MeasurementLog) Replay() ([]byte, error) {
	v, err := hex.DecodeString(l.Start)
	if err != nil || len(v) != sha256.Size {
		return nil, fmt.Errorf("%w: start %q is not a SHA-256 value", ErrMeasurementLog, l.Start)
	}
	for i, e := range l.Events {
		d, err := digestOf(e.Digest)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: %w", ErrMeasurementLog, i+1, err)
		}
		v = extendValue(v, d)
	}
	return v, nil
}

// extendValue is what a SHA-256 PCR holding v holds after d is extended.
func extendValue(v, d []byte) []byte {
	h := sha256.New()
	h.Write(v)
	h.Write(d)
	return h.Sum(nil)
}

// Last is the last trust store measured, or nil.
func (l *MeasurementLog) Last() *MeasurementEvent {
	if len(l.Events) == 0 {
		return nil
	}
	return &l.Events[len(l.Events)-1]
}

// digestOf returns the bytes of a "sha256:<64 hex>" digest.
func digestOf(d string) ([]byte, error) {
	const prefix = "sha256:"
	if len(d) != len(prefix)+2*sha256.Size || d[:len(prefix)] != prefix {
		return nil, fmt.Errorf("digest %q: want sha256:<64 hex digits>", d)
	}
	b, err := hex.DecodeString(d[len(prefix):])
	if err != nil {
		return nil, fmt.Errorf("digest %q: %w", d, err)
	}
	return b, nil
}

// ParseMeasurementLog reads a measurement log from untrusted bytes,
// strictly (unknown keys, duplicate keys and trailing data are errors).
func ParseMeasurementLog(b []byte) (*MeasurementLog, error) {
	if len(b) > maxMeasurementLogBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMeasurementLog, len(b), maxMeasurementLogBytes)
	}
	var l MeasurementLog
	if err := strictjson.Unmarshal(b, &l, 6); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMeasurementLog, err)
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	return &l, nil
}

func (l *MeasurementLog) check() error {
	if l.Version != measurementLogVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrMeasurementLog, l.Version, measurementLogVersion)
	}
	if l.PCR < minMeasurePCR || l.PCR > maxPCR {
		return fmt.Errorf("%w: PCR %d out of range %d to %d", ErrMeasurementLog, l.PCR, minMeasurePCR, maxPCR)
	}
	if len(l.Events) > maxMeasurementEvents {
		return fmt.Errorf("%w: %d events, at most %d", ErrMeasurementLog, len(l.Events), maxMeasurementEvents)
	}
	_, err := l.Replay()
	return err
}

// ReadMeasurementLog reads the log at path; a missing file is an error
// wrapping fs.ErrNotExist.
func ReadMeasurementLog(path string) (*MeasurementLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMeasurementLogBytes+1))
	if err != nil {
		return nil, err
	}
	l, err := ParseMeasurementLog(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// MeasureResult says what Measure did.
type MeasureResult struct {
	// Extended: the digest was extended into the PCR.
	Extended bool
	// Restarted says why the log began anew, "" when it went on: the PCR
	// at its reset value (a reboot), or a log that did not account for
	// the PCR's value.
	Restarted string
}

// Measure makes the measurement PCR show that the daemon enforces this
// trust store, and keeps the log that lets a verifier replay it (logPath,
// in the daemon's state folder): it extends the store digest into the PCR
// unless the log already ends with this digest and replays to the PCR's
// value (a daemon restart), and appends the event. After a reboot (the PCR
// at its reset value) the log starts again; a log that is missing or does
// not replay starts again from the PCR's current value. A record without a
// measurement PCR does nothing.
func (o *Opened) Measure(t tpm.TPM, logPath string) (MeasureResult, error) {
	var res MeasureResult
	pcr := o.Record.MeasurePCR
	if pcr == NoMeasurement {
		return res, nil
	}
	v, err := t.ReadPCR(pcr)
	if err != nil {
		return res, fmt.Errorf("measure the trust store: read PCR %d: %w", pcr, err)
	}
	log, lerr := ReadMeasurementLog(logPath)
	var replayed []byte
	if lerr == nil && log.PCR == pcr {
		replayed, lerr = log.Replay()
	}
	switch {
	case bytes.Equal(v, make([]byte, sha256.Size)):
		res.Restarted = "the PCR is at its reset value (a reboot)"
		log = newLog(pcr, v)
	case lerr != nil && errors.Is(lerr, fs.ErrNotExist):
		res.Restarted = "no measurement log"
		log = newLog(pcr, v)
	case lerr != nil:
		res.Restarted = lerr.Error()
		log = newLog(pcr, v)
	case log.PCR != pcr || !bytes.Equal(replayed, v) || len(log.Events) >= maxMeasurementEvents:
		res.Restarted = fmt.Sprintf("the log does not account for PCR %d's value (extended by another program, or the log is stale)", pcr)
		log = newLog(pcr, v)
	case log.Last() != nil && log.Last().Digest == o.Record.Digest:
		return res, nil // measured already, since boot
	}
	if err := t.ExtendPCR(pcr, digestBytes(o.Record.Digest)); err != nil {
		return res, fmt.Errorf("measure the trust store: extend PCR %d: %w", pcr, err)
	}
	res.Extended = true
	log.Events = append(log.Events, MeasurementEvent{Digest: o.Record.Digest, Generation: o.Generation, Time: time.Now().UTC().Truncate(time.Second)})
	data, err := json.MarshalIndent(log, "", "  ")
	if err != nil {
		return res, err
	}
	if err := writeAtomicAs(filepath.Dir(logPath), filepath.Base(logPath), "."+filepath.Base(logPath)+".tmp", append(data, '\n'), 0o644); err != nil {
		return res, fmt.Errorf("measure the trust store: PCR %d extended, but writing the measurement log failed (a quote cannot be replayed until the next measurement): %w", pcr, err)
	}
	return res, nil
}

func newLog(pcr int, v []byte) *MeasurementLog {
	return &MeasurementLog{Version: measurementLogVersion, PCR: pcr, Start: hex.EncodeToString(v), Events: []MeasurementEvent{}}
}
