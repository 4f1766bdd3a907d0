package trust

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/tpm"
)

// StatusReport says what is sealed and whether the trust store would open.
type StatusReport struct {
	Dir string `json:"dir"`
	// Sealed: a seal record exists and parses.
	Sealed bool `json:"sealed"`
	// Generation, SealedAt, Files, Digest and BindPCRs come from the
	// record (zero when Sealed is false).
	Generation uint64    `json:"generation,omitempty"`
	SealedAt   time.Time `json:"sealedAt,omitzero"`
	Files      int       `json:"files"`
	Digest     string    `json:"digest,omitempty"`
	BindPCRs   []int     `json:"bindPCRs,omitempty"`
	// Counter is the TPM's trust-generation counter.
	Counter uint64 `json:"counter"`
	// Unsealed: the counter holds the record's generation and the TPM
	// released the key.
	Unsealed bool `json:"unsealed"`
	// Authentic: the record's MAC verified under the key.
	Authentic bool `json:"authentic"`
	// Match: the files on disk are those the record lists. When Authentic
	// is false the record's list itself is not to be trusted.
	Match       bool         `json:"match"`
	Differences []Difference `json:"differences,omitempty"`
	// Measurement is the measurement PCR's state; nil when the record
	// names none.
	Measurement *Measurement `json:"measurement,omitempty"`
	// Problems say, one line each, why the trust store would not open and
	// what to do; empty when it would.
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether the trust store would open.
func (r *StatusReport) OK() bool {
	return r.Sealed && r.Unsealed && r.Authentic && r.Match && len(r.Problems) == 0
}

// Measurement is the state of the PCR the store digest is measured into.
type Measurement struct {
	PCR int `json:"pcr"`
	// Value is the PCR's value, hex.
	Value string `json:"value"`
	// Expected is its value after the digest was the first measurement
	// since reset (ExpectedPCR), hex, unless Log says otherwise.
	Expected string `json:"expected"`
	// Measured: Value equals Expected.
	Measured bool `json:"measured"`
	// Note explains a Value other than Expected.
	Note string `json:"note,omitempty"`
	// Log is the measurement log that replays to Value, when one does;
	// Expected is then Value and Measured says whether its last event is
	// this trust store.
	Log string `json:"log,omitempty"`
}

// Status reports on the trust store in dir: what is sealed, the TPM's
// counter, whether the key unseals, whether the record is authentic, which
// files differ, and the measurement PCR. Every state of the trust store is
// described in the report; an error is returned only when Status cannot
// look (the TPM or the directory cannot be read).
//
// Status unseals the key to verify the record's MAC; it never extends a PCR
// or moves the counter. measurementLog is the daemon's measurement log
// (MeasurementLogName in its state folder); "" or a missing file: the PCR
// is compared with the value of a first measurement since boot only.
func Status(dir string, t tpm.TPM, measurementLog string) (*StatusReport, error) {
	r := &StatusReport{Dir: dir}
	counter, err := t.Generation()
	if err != nil {
		return nil, fmt.Errorf("status: read the trust generation counter: %w", err)
	}
	r.Counter = counter
	rec, err := readRecord(dir)
	switch {
	case errors.Is(err, ErrNotSealed) || errors.Is(err, ErrRecord):
		r.Problems = append(r.Problems, err.Error())
		return r, nil
	case err != nil:
		return nil, fmt.Errorf("status: %w", err)
	}
	r.Sealed = true
	r.Generation, r.SealedAt, r.Files, r.Digest, r.BindPCRs = rec.Generation, rec.SealedAt, len(rec.Files), rec.Digest, rec.BindPCRs

	k, err := unsealKey(rec, t)
	switch {
	case err == nil:
		r.Unsealed, r.Authentic = true, true
		clear(k)
	case errors.Is(err, ErrRecord):
		r.Unsealed = true
		r.Problems = append(r.Problems, err.Error())
	default:
		r.Problems = append(r.Problems, err.Error())
	}

	files, err := readListed(dir, rec.Files)
	switch {
	case errors.Is(err, ErrStore):
		r.Problems = append(r.Problems, err.Error())
	case err != nil:
		return nil, fmt.Errorf("status: %w", err)
	default:
		r.Differences = diff(rec.Files, files)
		r.Match = len(r.Differences) == 0
		if !r.Match {
			r.Problems = append(r.Problems, (&MismatchError{Generation: rec.Generation, Differences: r.Differences}).Error())
		}
	}

	if rec.MeasurePCR != NoMeasurement {
		v, err := t.ReadPCR(rec.MeasurePCR)
		if err != nil {
			return nil, fmt.Errorf("status: read PCR %d: %w", rec.MeasurePCR, err)
		}
		want := ExpectedPCR(rec.Digest)
		m := &Measurement{PCR: rec.MeasurePCR, Value: hex.EncodeToString(v), Expected: hex.EncodeToString(want), Measured: bytes.Equal(v, want)}
		if measurementLog != "" {
			if l, err := ReadMeasurementLog(measurementLog); err == nil && l.PCR == rec.MeasurePCR {
				if got, err := l.Replay(); err == nil && bytes.Equal(got, v) && l.Last() != nil {
					m.Log = measurementLog
					if m.Measured = l.Last().Digest == rec.Digest; m.Measured {
						m.Expected = m.Value
					}
				}
			}
		}
		switch {
		case m.Measured:
		case bytes.Equal(v, make([]byte, len(v))):
			m.Note = "not measured since boot; the daemon measures the trust store when it takes the seal"
		case m.Log != "":
			m.Note = "the last trust store measured is another one: the daemon has not taken this seal (yet)"
		default:
			m.Note = "holds other measurements: the daemon has not taken this seal, another program extended the PCR, or the measurement log was not found"
		}
		r.Measurement = m
	}
	return r, nil
}
