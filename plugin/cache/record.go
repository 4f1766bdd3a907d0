package cache

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"time"

	"github.com/sealgate/sealgate/plugin/verdict"
)

// The snapshot file, format version 1. All integers are big-endian.
//
//	file      = header record*
//	header    = "SGVCACHE" u16(1) u16(0)                     12 bytes
//	record    = marker u32(len(body)) body mac
//	marker    = 0xff "SGVREC" 0x01                           8 bytes
//	mac       = HMAC-SHA256(key, macDomain || body)          32 bytes
//	body      = u8(1) u64(generation)
//	            str(digest) str(repository) str(rule) str(policyDigest)
//	            u8(flags) [time(verifiedAt)] i64(clock, ns)
//	            uvarint(n) str*n                             reasons
//	            uvarint(m) satisfier*m
//	satisfier = str(authority) str(keyID) str(issuer) str(subject)
//	            u8(hasSignedAt) [time(signedAt)]
//	            str(kind) str(predicateType) str(digest) str(requirement)
//	str       = uvarint(len) bytes
//	time      = i64(unix seconds) u32(nanoseconds)
//	flags     = bit 0: allowed; bit 1: verifiedAt present
//
// Each record carries its own MAC, so a damaged record costs that record and
// no other, and the marker lets the reader find the next record after a
// damaged length. The encoding is canonical (minimal varints, no unknown
// flags, no trailing bytes, nanoseconds < 1e9): one verdict has exactly one
// encoding, which the tests and the fuzz target rely on to prove that every
// verdict the reader yields is exactly what a MAC covers. The MAC covers the
// format version twice (macDomain and the body's first byte) and the trust
// generation, so neither can be edited without the key.

const (
	formatVersion = 1
	headerSize    = 12
	markerSize    = 8
	recordPrefix  = markerSize + 4
	macSize       = sha256.Size

	// MaxRecordSize bounds the body of one record. A verdict whose record
	// would be larger stays in memory but is not persisted; the reader
	// treats a larger length as damage.
	MaxRecordSize = 64 << 10
)

var (
	fileMagic    = []byte("SGVCACHE")
	recordMarker = []byte("\xffSGVREC\x01")
	macDomain    = []byte("sealgate verdict cache record v1\x00")
)

// Sentinels for a snapshot file ignored as a whole (LoadStats.FileError).
var (
	// ErrFileTooLarge: the file exceeds the size bound and was not read.
	ErrFileTooLarge = errors.New("verdict cache file too large")
	// ErrNotCacheFile: the file does not start with the cache file header,
	// or is not a regular file.
	ErrNotCacheFile = errors.New("not a verdict cache file")
	// ErrUnsupportedVersion: the file is of a format version this build
	// does not read (written by a newer sealgate).
	ErrUnsupportedVersion = errors.New("unsupported verdict cache format version")
)

// errRecordTooLarge: a verdict whose encoding exceeds MaxRecordSize.
var errRecordTooLarge = errors.New("verdict record too large")

// appendHeader appends the file header.
func appendHeader(dst []byte) []byte {
	dst = append(dst, fileMagic...)
	dst = binary.BigEndian.AppendUint16(dst, formatVersion)
	return binary.BigEndian.AppendUint16(dst, 0)
}

// checkHeader returns the records after a valid header.
func checkHeader(data []byte) ([]byte, error) {
	if len(data) < headerSize || !bytes.Equal(data[:len(fileMagic)], fileMagic) {
		return nil, ErrNotCacheFile
	}
	if v := binary.BigEndian.Uint16(data[8:]); v != formatVersion || binary.BigEndian.Uint16(data[10:]) != 0 {
		return nil, fmt.Errorf("%w %d", ErrUnsupportedVersion, v)
	}
	return data[headerSize:], nil
}

// appendRecord appends the framed, MAC'd record of (k, v) to dst. mac is an
// HMAC-SHA256 keyed with the cache key; it is reset before use.
func appendRecord(dst []byte, mac hash.Hash, k Key, v Verdict) ([]byte, error) {
	start := len(dst)
	dst = append(dst, recordMarker...)
	dst = append(dst, 0, 0, 0, 0) // length, filled below
	bodyStart := len(dst)
	dst = appendBody(dst, k, v)
	n := len(dst) - bodyStart
	if n > MaxRecordSize {
		return dst[:start], fmt.Errorf("%w: %d bytes (at most %d)", errRecordTooLarge, n, MaxRecordSize)
	}
	binary.BigEndian.PutUint32(dst[start+markerSize:], uint32(n))
	mac.Reset()
	mac.Write(macDomain)
	mac.Write(dst[bodyStart:])
	return mac.Sum(dst), nil
}

func appendBody(b []byte, k Key, v Verdict) []byte {
	b = append(b, formatVersion)
	b = binary.BigEndian.AppendUint64(b, v.Generation)
	b = appendString(b, k.Digest)
	b = appendString(b, k.Repository)
	b = appendString(b, k.Rule)
	b = appendString(b, k.PolicyDigest)
	var flags byte
	if v.Allowed {
		flags |= 1
	}
	if !v.VerifiedAt.IsZero() {
		flags |= 2
	}
	b = append(b, flags)
	if !v.VerifiedAt.IsZero() {
		b = appendTime(b, v.VerifiedAt)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(v.Clock))
	b = binary.AppendUvarint(b, uint64(len(v.Reasons)))
	for _, r := range v.Reasons {
		b = appendString(b, r)
	}
	b = binary.AppendUvarint(b, uint64(len(v.SatisfiedBy)))
	for _, s := range v.SatisfiedBy {
		b = appendString(b, s.Authority)
		b = appendString(b, s.KeyID)
		b = appendString(b, s.Issuer)
		b = appendString(b, s.Subject)
		if s.SignedAt.IsZero() {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = appendTime(b, s.SignedAt)
		}
		b = appendString(b, s.Kind)
		b = appendString(b, s.PredicateType)
		b = appendString(b, s.Digest)
		b = appendString(b, s.Requirement)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// recordStatus is what the reader made of one record.
type recordStatus int

const (
	recordOK recordStatus = iota
	recordBadMAC
	recordOldGeneration
	recordNewerGeneration
	recordMalformed
)

// parseRecords walks the records after the header and calls fn for each
// record that is well framed, carries a valid MAC, decodes canonically and
// belongs to generation, with the record's raw bytes (a sub-slice of data).
// Everything else is counted in st and skipped; after damage the reader
// resynchronises on the next record marker. It never fails as a whole.
func parseRecords(data []byte, mac hash.Hash, generation uint64, st *LoadStats, fn func(k Key, v Verdict, raw []byte)) {
	var sum [macSize]byte
	// Repositories, rules, policy digests, authorities, identities and
	// reasons repeat across thousands of records: one copy each.
	intern := make(map[string]string)
	for off := 0; off < len(data); {
		rest := data[off:]
		size, status, authentic := 0, recordMalformed, false
		var k Key
		var v Verdict
		if len(rest) >= recordPrefix && bytes.Equal(rest[:markerSize], recordMarker) {
			n := int(binary.BigEndian.Uint32(rest[markerSize:]))
			if n <= MaxRecordSize && len(rest) >= recordPrefix+n+macSize {
				size = recordPrefix + n + macSize
				body := rest[recordPrefix : recordPrefix+n]
				mac.Reset()
				mac.Write(macDomain)
				mac.Write(body)
				authentic = hmac.Equal(mac.Sum(sum[:0]), rest[recordPrefix+n:size])
				if !authentic {
					status = recordBadMAC
				} else if k, v, status = decodeBody(body, intern); status == recordOK {
					switch {
					case v.Generation < generation:
						status = recordOldGeneration
					case v.Generation > generation:
						status = recordNewerGeneration
					}
				}
			}
		}
		switch status {
		case recordOK:
			fn(k, v, rest[:size:size])
		case recordBadMAC:
			st.BadMAC++
		case recordOldGeneration:
			st.OldGeneration++
		case recordNewerGeneration:
			st.NewerGeneration++
		default:
			st.Malformed++
		}
		// An authentic record ends where its length says (the MAC
		// covered exactly that many bytes); so does one that failed its
		// MAC when the next marker (or the end) follows. Otherwise the
		// length is not to be trusted, and the reader looks for the next
		// marker after the record's start.
		if size > 0 && (authentic || off+size == len(data) || bytes.HasPrefix(data[off+size:], recordMarker)) {
			off += size
			continue
		}
		next := bytes.Index(data[off+1:], recordMarker)
		if next < 0 {
			return
		}
		off += 1 + next
	}
}

// decodeBody decodes a record body, insisting on the canonical encoding.
// Strings other than digests are shared through intern when it is not nil.
func decodeBody(body []byte, intern map[string]string) (Key, Verdict, recordStatus) {
	r := decoder{b: body, intern: intern}
	var k Key
	var v Verdict
	if r.u8() != formatVersion {
		return k, v, recordMalformed
	}
	v.Generation = r.u64()
	k.Digest = r.unique()
	k.Repository = r.str()
	k.Rule = r.str()
	k.PolicyDigest = r.str()
	flags := r.u8()
	if flags&^3 != 0 {
		return k, v, recordMalformed
	}
	v.Allowed = flags&1 != 0
	if flags&2 != 0 {
		v.VerifiedAt = r.time()
	}
	v.Clock = time.Duration(r.u64())
	if n := r.count(1); n > 0 {
		v.Reasons = make([]string, n)
		for i := range v.Reasons {
			v.Reasons[i] = r.str()
		}
	}
	// A satisfier takes at least 9 bytes (eight empty strings and a flag).
	if n := r.count(9); n > 0 {
		v.SatisfiedBy = make([]verdict.Satisfier, n)
		for i := range v.SatisfiedBy {
			s := &v.SatisfiedBy[i]
			s.Authority = r.str()
			s.KeyID = r.str()
			s.Issuer = r.str()
			s.Subject = r.str()
			switch r.u8() {
			case 0:
			case 1:
				s.SignedAt = r.time()
			default:
				r.bad = true
			}
			s.Kind = r.str()
			s.PredicateType = r.str()
			s.Digest = r.unique()
			s.Requirement = r.str()
		}
	}
	if r.bad || len(r.b) != 0 {
		return Key{}, Verdict{}, recordMalformed
	}
	return k, v, recordOK
}

// decoder reads a body; after the first error it reads zeros and sets bad.
type decoder struct {
	b      []byte
	bad    bool
	intern map[string]string
}

func (r *decoder) take(n int) []byte {
	if r.bad || n < 0 || n > len(r.b) {
		r.bad = true
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *decoder) u8() byte {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *decoder) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *decoder) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// uvarint reads a minimally encoded unsigned varint.
func (r *decoder) uvarint() uint64 {
	if r.bad {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 || n != uvarintLen(x) {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return x
}

// count reads an element count, each element taking at least min bytes,
// so that a count can never ask for more memory than the body could fill.
func (r *decoder) count(min int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/min) {
		r.bad = true
		return 0
	}
	return int(n)
}

// bytes reads a length-prefixed string's bytes.
func (r *decoder) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	return r.take(int(n))
}

// str reads a string that other records likely repeat.
func (r *decoder) str() string {
	p := r.bytes()
	if r.intern == nil || len(p) == 0 {
		return string(p)
	}
	if s, ok := r.intern[string(p)]; ok {
		return s
	}
	s := string(p)
	r.intern[s] = s
	return s
}

// unique reads a string no other record repeats (a digest).
func (r *decoder) unique() string { return string(r.bytes()) }

func (r *decoder) time() time.Time {
	s, ns := r.u64(), r.u32()
	if ns >= 1e9 {
		r.bad = true
		return time.Time{}
	}
	t := time.Unix(int64(s), int64(ns))
	// The zero time is encoded by its absence, and a time that does not
	// come back as the same seconds is out of time.Time's range: neither
	// is canonical.
	if t.IsZero() || t.Unix() != int64(s) {
		r.bad = true
	}
	return t
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// newMAC returns the record MAC keyed with key.
func newMAC(key []byte) hash.Hash { return hmac.New(sha256.New, key) }
