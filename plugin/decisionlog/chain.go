// Package decisionlog keeps every decision as one JSON line, each line
// carrying the SHA-256 of the line before it (across rotated files), and
// the hash of the last line in a head file beside it, so that a removed,
// reordered, edited or cut-off line is found by Verify, naming the line.
//
// Writing is off the decision's path: Add never blocks and never fails a
// decision; what cannot be written (a full queue, a full disk) is counted
// and said in the next line that can be.
package decisionlog

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sealgate/sealgate/plugin/verdict"
)

// Entry is one decision as the log records it.
type Entry struct {
	// Seq numbers the lines from 1, across rotations.
	Seq uint64 `json:"seq"`
	// Prev is the hex SHA-256 of the previous line (without its newline);
	// empty for the first line ever written.
	Prev string    `json:"prev"`
	Time time.Time `json:"time"`

	Runtime     string              `json:"runtime,omitempty"`
	Namespace   string              `json:"namespace,omitempty"`
	Pod         string              `json:"pod,omitempty"`
	Container   string              `json:"container,omitempty"`
	Image       string              `json:"image"`
	Digest      string              `json:"digest,omitempty"`
	Rule        string              `json:"rule"`
	Mode        string              `json:"mode"`
	Verdict     string              `json:"verdict"` // allow, deny, or would-deny (warn and audit modes)
	Reasons     []string            `json:"reasons,omitempty"`
	Source      string              `json:"source"`
	SatisfiedBy []verdict.Satisfier `json:"satisfiedBy,omitempty"`
	Generation  uint64              `json:"trustGeneration,omitempty"`
	// Lost is how many decisions could not be written before this line
	// (queue full, write failed): the chain is whole, the record is not.
	Lost uint64 `json:"lost,omitempty"`
}

// Head is the head file: where the chain ends.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// maxLine bounds one line, in Verify and when a log is reopened.
const maxLine = 1 << 20

// ErrBroken is wrapped by every error Verify reports about the chain.
var ErrBroken = errors.New("decision log chain broken")

func hashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// Verify checks files, oldest first (rotated files, then the current one),
// as one chain: each line parses, numbers follow one another, and each
// names the hash of the line before it. The first line of the first file
// may continue a chain whose older files are gone. With head, the chain
// must reach the line the head file names, with that line's hash, so that
// a cut-off tail is found; lines after it are those written since the head
// file last moved. It returns the number of lines checked.
func Verify(files []string, head *Head) (int, error) {
	var prevHash string
	var prevSeq uint64
	n := 0
	headFound := head == nil || head.Seq == 0
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return n, err
		}
		r := bufio.NewReaderSize(f, 64<<10)
		for lineNo := 1; ; lineNo++ {
			line, err := readLine(r)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				return n, fmt.Errorf("%s:%d: %w: %v", file, lineNo, ErrBroken, err)
			}
			var e Entry
			if err := json.Unmarshal(line, &e); err != nil {
				f.Close()
				return n, fmt.Errorf("%s:%d: %w: not a decision line (edited or damaged): %v", file, lineNo, ErrBroken, err)
			}
			switch {
			case n > 0 && e.Seq != prevSeq+1:
				f.Close()
				return n, fmt.Errorf("%s:%d: %w: line number %d follows %d (a line was removed or moved)", file, lineNo, ErrBroken, e.Seq, prevSeq)
			case n > 0 && e.Prev != prevHash:
				f.Close()
				return n, fmt.Errorf("%s:%d: %w: the line before it (line %d of the chain) is not the one this line was written after: it was edited, or lines were removed or moved", file, lineNo, ErrBroken, prevSeq)
			}
			prevHash, prevSeq = hashLine(line), e.Seq
			if head != nil && e.Seq == head.Seq {
				headFound = prevHash == head.Hash
				if !headFound {
					f.Close()
					return n, fmt.Errorf("%s:%d: %w: line %d is not the one the head file names (edited)", file, lineNo, ErrBroken, e.Seq)
				}
			}
			n++
		}
		f.Close()
	}
	if head != nil && !headFound {
		return n, fmt.Errorf("%w: the log ends at line %d, the head file at line %d: lines were cut off the end", ErrBroken, prevSeq, head.Seq)
	}
	return n, nil
}

// readLine returns the next newline-terminated line without its newline;
// a last line without a newline is a torn write.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(line, []byte("\n")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) == 0:
			return nil, io.EOF
		case errors.Is(err, io.EOF):
			return nil, errors.New("last line has no newline (a torn write)")
		default:
			return nil, err
		}
	}
}

// ReadHead reads a head file.
func ReadHead(path string) (*Head, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var h Head
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("head file %s: %w", path, err)
	}
	return &h, nil
}
