package trust

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sealgate/sealgate/tpm"
)

// Opened is a trust store whose content was checked against its seal: the
// key unsealed at the TPM's current generation, the record's MAC verified,
// and every sealed file (the policy and what it names) is on disk as sealed.
type Opened struct {
	// Dir is the trust store directory.
	Dir string
	// Record is the verified seal record.
	Record *Record
	// Generation is the trust generation the store was sealed at, which the
	// TPM's counter still holds.
	Generation uint64

	key     []byte
	content map[string][]byte // sealed files by slash path, as checked
}

// String describes the opened store without its key, so that logging an
// Opened (%v, %+v, slog) never writes K.
func (o *Opened) String() string {
	return fmt.Sprintf("trust store %s (generation %d, digest %s)", o.Dir, o.Generation, o.Record.Digest)
}

// GoString is String, for %#v.
func (o *Opened) GoString() string { return o.String() }

// DeriveKey derives a 32-byte key for purpose from the sealed key K
// (HKDF-SHA256, info = purpose), so that each user of K (the verdict cache
// uses "sealgate verdict cache v1") gets its own key and none learns K. The
// key changes at every seal, which is what makes a verdict authenticated
// under an older seal fail. "sealgate trust store v1" is the record's own
// MAC key; no other user may ask for it.
func (o *Opened) DeriveKey(purpose string) []byte { return derive(o.key, purpose) }

// Open checks the trust store in dir against its seal record with the TPM:
// the TPM's trust-generation counter must still hold the generation the
// record was sealed at (or an older store and record were restored: error
// wrapping tpm.ErrCounterMoved), the TPM must unseal the key (tpm.ErrPCRMismatch
// when bound PCRs changed), the record's MAC must verify under it
// (ErrRecord), and every file the record lists must be on disk as sealed, none
// removed (*MismatchError, wrapping ErrMismatch, naming the file). A store
// without a record wraps ErrNotSealed.
//
// Open does not measure; the daemon calls Measure after it.
func Open(dir string, t tpm.TPM) (*Opened, error) {
	rec, err := readRecord(dir)
	if err != nil {
		return nil, fmt.Errorf("open trust store: %w", err)
	}
	k, err := unsealKey(rec, t)
	if err != nil {
		return nil, fmt.Errorf("open trust store: %w", err)
	}
	files, err := readListed(dir, rec.Files)
	if err != nil {
		clear(k)
		return nil, fmt.Errorf("open trust store: %w", err)
	}
	if d := diff(rec.Files, files); len(d) > 0 {
		clear(k)
		return nil, fmt.Errorf("open trust store %s: %w", dir, &MismatchError{Generation: rec.Generation, Differences: d})
	}
	content := make(map[string][]byte, len(files))
	for _, f := range files {
		content[f.Path] = f.data
	}
	return &Opened{Dir: dir, Record: rec, Generation: rec.Generation, key: k, content: content}, nil
}

// ErrNotInStore is returned by ReadFile for a file that is not part of the
// sealed trust store.
var ErrNotInStore = errors.New("not in the sealed trust store")

// ReadFile returns the content of a file of the trust store exactly as it
// was read and checked against the seal, never read again from disk: what
// decides is what was authenticated, with no window between the check and
// the use. name is absolute, or relative to the trust store.
func (o *Opened) ReadFile(name string) ([]byte, error) {
	rel := name
	if filepath.IsAbs(name) {
		dir, err := filepath.Abs(o.Dir)
		if err != nil {
			return nil, err
		}
		if rel, err = filepath.Rel(dir, name); err != nil {
			return nil, fmt.Errorf("%s: %w", name, ErrNotInStore)
		}
	}
	data, ok := o.content[filepath.ToSlash(filepath.Clean(rel))]
	if !ok {
		return nil, fmt.Errorf("%s is outside the sealed trust store %s, or was not sealed: %w", name, o.Dir, ErrNotInStore)
	}
	return bytes.Clone(data), nil
}

// unsealKey checks the counter, unseals K and verifies the record's MAC.
// Checking the counter first gives the operator the two numbers, whatever
// error the TPM's policy check would give.
func unsealKey(rec *Record, t tpm.TPM) ([]byte, error) {
	gen, err := t.Generation()
	if err != nil {
		return nil, fmt.Errorf("read the trust generation counter: %w", err)
	}
	if gen != rec.Generation {
		return nil, counterMoved(rec.Generation, gen)
	}
	k, err := t.Unseal(&rec.Sealed)
	if err != nil {
		return nil, explainUnseal(rec, t, err)
	}
	if len(k) != keySize || !rec.verifyMAC(k) {
		clear(k)
		return nil, fmt.Errorf("%w: %s does not match its MAC: it was edited after sealing, or forged; restore the one written by `sealgate trust seal`, or check the trust store and seal it again", ErrRecord, RecordName)
	}
	return k, nil
}

func counterMoved(sealed, now uint64) error {
	if now > sealed {
		return fmt.Errorf("%w: the trust store was sealed at generation %d but the TPM counter is at %d: an older trust store or seal record was restored; restore the current one or run `sealgate trust seal`", tpm.ErrCounterMoved, sealed, now)
	}
	return fmt.Errorf("%w: the trust store was sealed at generation %d but the TPM counter is at %d, lower: the TPM was cleared or replaced, or the seal record comes from another node; check the trust store and run `sealgate trust seal`", tpm.ErrCounterMoved, sealed, now)
}

func explainUnseal(rec *Record, t tpm.TPM, err error) error {
	switch {
	case errors.Is(err, tpm.ErrCounterMoved):
		// The counter moved between the read and the unseal.
		if gen, gerr := t.Generation(); gerr == nil && gen != rec.Generation {
			return counterMoved(rec.Generation, gen)
		}
		return fmt.Errorf("unseal the trust store key (sealed at generation %d): %w", rec.Generation, err)
	case errors.Is(err, tpm.ErrPCRMismatch):
		return fmt.Errorf("the trust store key is bound to PCRs %s, which hold other values than when it was sealed (a firmware, boot loader or Secure Boot change); if the change is expected, run `sealgate trust seal` to bind to the new values: %w", formatPCRs(rec.BindPCRs), err)
	default:
		return fmt.Errorf("unseal the trust store key (sealed at generation %d): %w", rec.Generation, err)
	}
}

func formatPCRs(p []int) string {
	s := make([]string, len(p))
	for i, x := range p {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

// digestBytes returns the raw bytes of a checked "sha256:<hex>" digest.
func digestBytes(d string) []byte {
	b, _ := hex.DecodeString(strings.TrimPrefix(d, "sha256:"))
	return b
}

// ExpectedPCR is the value a SHA-256 PCR holds after the store digest was
// its first measurement since reset: SHA-256(32 zero bytes || digest).
func ExpectedPCR(digest string) []byte {
	h := sha256.New()
	h.Write(make([]byte, sha256.Size))
	h.Write(digestBytes(digest))
	return h.Sum(nil)
}
