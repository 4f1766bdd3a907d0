package decisionlog

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sealgate/sealgate/plugin/verdict"
)

// appendEntry appends e as one JSON object, as encoding/json would write it
// (same keys, order and omissions; strings escaped as JSON requires, not
// HTML-escaped): the writer's hot loop, where reflection cost a third of
// the log's CPU. TestAppendEntryMatchesJSON and FuzzAppendEntry check it
// against encoding/json.
func appendEntry(b []byte, e *Entry) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = appendKeyString(b, `,"prev":`, e.Prev)
	b = append(b, `,"time":`...)
	b = appendTime(b, e.Time)
	b = appendOmitString(b, `,"runtime":`, e.Runtime)
	b = appendOmitString(b, `,"namespace":`, e.Namespace)
	b = appendOmitString(b, `,"pod":`, e.Pod)
	b = appendOmitString(b, `,"container":`, e.Container)
	b = appendKeyString(b, `,"image":`, e.Image)
	b = appendOmitString(b, `,"digest":`, e.Digest)
	b = appendKeyString(b, `,"rule":`, e.Rule)
	b = appendKeyString(b, `,"mode":`, e.Mode)
	b = appendKeyString(b, `,"verdict":`, e.Verdict)
	if len(e.Reasons) > 0 {
		b = append(b, `,"reasons":[`...)
		for i, r := range e.Reasons {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, r)
		}
		b = append(b, ']')
	}
	b = appendKeyString(b, `,"source":`, e.Source)
	if len(e.SatisfiedBy) > 0 {
		b = append(b, `,"satisfiedBy":[`...)
		for i := range e.SatisfiedBy {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendSatisfier(b, &e.SatisfiedBy[i])
		}
		b = append(b, ']')
	}
	if e.Generation != 0 {
		b = append(b, `,"trustGeneration":`...)
		b = strconv.AppendUint(b, e.Generation, 10)
	}
	if e.Lost != 0 {
		b = append(b, `,"lost":`...)
		b = strconv.AppendUint(b, e.Lost, 10)
	}
	return append(b, '}')
}

func appendSatisfier(b []byte, s *verdict.Satisfier) []byte {
	b = appendKeyString(b, `{"authority":`, s.Authority)
	b = appendOmitString(b, `,"keyID":`, s.KeyID)
	b = appendOmitString(b, `,"issuer":`, s.Issuer)
	b = appendOmitString(b, `,"subject":`, s.Subject)
	if !s.SignedAt.IsZero() {
		b = append(b, `,"signedAt":`...)
		b = appendTime(b, s.SignedAt)
	}
	if !s.ValidUntil.IsZero() {
		b = append(b, `,"validUntil":`...)
		b = appendTime(b, s.ValidUntil)
	}
	b = appendOmitString(b, `,"kind":`, s.Kind)
	b = appendOmitString(b, `,"predicateType":`, s.PredicateType)
	b = appendOmitString(b, `,"digest":`, s.Digest)
	b = appendOmitString(b, `,"origin":`, s.Origin)
	b = appendOmitString(b, `,"requirement":`, s.Requirement)
	return append(b, '}')
}

func appendKeyString(b []byte, key, s string) []byte {
	return appendString(append(b, key...), s)
}

func appendOmitString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendKeyString(b, key, s)
}

// appendTime writes t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028/U+2029
// escaped, as encoding/json does without its HTML escaping.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
