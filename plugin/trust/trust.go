// Package trust loads, digests and checks sealgate's trust store, and binds
// it to the node's TPM.
//
// The trust store is a directory (default /etc/sealgate) holding the policy
// (policy.yaml), public keys (keys/) and Sigstore trusted roots (roots/).
// What is sealed is the policy and exactly the files it names: what
// decides. Other files in the folder (an editor's swap file, notes,
// examples) are neither sealed nor read, so they can neither stop the
// daemon nor take part in a decision; the seal record, sealed.json, lives
// inside it.
//
// Sealing (Seal) generates a fresh 32-byte key K, increments the TPM's
// trust-generation counter, seals K to the TPM at the new generation (and,
// when asked, to PCRs), and writes sealed.json: the SHA-256 of every sealed file,
// the digest of the whole store, and an HMAC over all of it under a key
// derived from K. Opening (Open, at daemon start-up) unseals K, which only
// the TPM can do and only while the counter still holds that generation,
// checks the MAC and recomputes every file. So someone who can write to the
// disk but does not hold the TPM cannot add a key, relax the policy, forge
// the record, or restore an older trust store with its older record: each is
// refused with a message naming what differs.
//
// The package never logs; errors wrap the sentinels below.
package trust

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultDir is where the trust store lives on a node.
const DefaultDir = "/etc/sealgate"

// RecordName is the seal record's file name, directly inside the trust
// store. It is the only file the digest leaves out.
const RecordName = "sealed.json"

// tmpRecordName is the seal record while it is being written. A leftover
// one (a crash during a seal) is removed by the next Seal; until then Open
// reports it as an added file, which is what it is.
const tmpRecordName = ".sealed.json.tmp"

// Sentinels callers branch on. TPM conditions (the counter moved on, PCRs
// changed, lockout, no TPM) are reported with the tpm package's sentinels.
var (
	// ErrNotSealed: the trust store has no seal record.
	ErrNotSealed = errors.New("trust store not sealed")
	// ErrMismatch: the files on disk differ from what was sealed.
	ErrMismatch = errors.New("trust store does not match its seal")
	// ErrRecord: the seal record is malformed, or its MAC does not verify
	// (it was edited or forged).
	ErrRecord = errors.New("invalid seal record")
	// ErrStore: the trust store cannot be sealed or digested as it is (a
	// symbolic link, a special file, a file too large, a policy that names
	// a file outside the store, an invalid policy).
	ErrStore = errors.New("invalid trust store")
	// ErrOptions: SealOptions asks for something impossible (a firmware
	// PCR, one PCR both measured into and bound to).
	ErrOptions = errors.New("invalid seal options")
)

// Change says how a file differs from the seal record.
type Change string

const (
	Added   Change = "added"
	Changed Change = "changed"
	Removed Change = "removed"
)

// Difference is one file that differs from the seal record. Path is
// slash-separated and relative to the trust store.
type Difference struct {
	Path   string `json:"path"`
	Change Change `json:"change"`
}

// MismatchError lists every file that differs from the seal record, sorted
// by path. Its message names the first one and says what to do, because it
// is the one line an operator reads when the daemon refuses to start.
type MismatchError struct {
	Generation  uint64
	Differences []Difference
}

func (e *MismatchError) Error() string {
	if len(e.Differences) == 0 {
		return ErrMismatch.Error()
	}
	d := e.Differences[0]
	verb := map[Change]string{Added: "was added", Changed: "was changed", Removed: "was removed"}[d.Change]
	msg := fmt.Sprintf("%s %s since the trust store was sealed at generation %d", d.Path, verb, e.Generation)
	if n := len(e.Differences) - 1; n > 0 {
		others := make([]string, 0, n)
		for _, o := range e.Differences[1:] {
			others = append(others, o.Path+" "+string(o.Change))
		}
		if len(others) > 5 {
			others = append(others[:5], fmt.Sprintf("%d more", n-5))
		}
		msg += " (also: " + strings.Join(others, ", ") + ")"
	}
	if d.Change == Removed {
		return msg + "; restore it, or run `sealgate trust seal` to accept the change"
	}
	return msg + "; run `sealgate trust seal` to accept it"
}

// Unwrap makes errors.Is(err, ErrMismatch) hold.
func (e *MismatchError) Unwrap() error { return ErrMismatch }
