package policy

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every error Parse and Load return for a policy
// that cannot be used, so that callers can tell a bad policy (a
// configuration error the operator must fix) from an I/O failure.
var ErrInvalid = errors.New("invalid policy")

// Error locates one problem in a policy file. Operators fix policies from
// these messages, so each one names the file, the line and column, the key
// path (e.g. "rules[1].signatures.threshold") and what to do.
type Error struct {
	// File is the policy path as given to Load or Parse.
	File string
	// Line and Column are 1-based; zero when the problem has no position
	// (the file as a whole is too large, for instance).
	Line, Column int
	// Key is the path of the offending key, empty for the document itself.
	Key string
	// Msg says what is wrong and what to do about it.
	Msg string
}

// Error formats the problem as "file:line:col: key: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrInvalid, so errors.Is(err, ErrInvalid) holds.
func (e *Error) Unwrap() error { return ErrInvalid }
