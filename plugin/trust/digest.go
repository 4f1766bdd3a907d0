package trust

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io/fs"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on what a trust store may hold. A trust store is a policy of a few
// KiB, keys under 1 KiB and trusted roots of tens of KiB; the bounds are far
// above that and keep a file planted by an attacker (a huge file, a million
// files) from exhausting the daemon at start-up.
const (
	maxFileSize  = 16 << 20
	maxFiles     = 4096
	maxTotalSize = 64 << 20
	maxPathLen   = 1024
)

// File is one file of the trust store as sealed.
type File struct {
	// Path is slash-separated and relative to the trust store.
	Path string `json:"path"`
	// SHA256 is the lower-case hex SHA-256 of the content.
	SHA256 string `json:"sha256"`
	// Size is the content's length in bytes.
	Size int64 `json:"size"`
	// data is the content as read and digested, when read from disk.
	data []byte
}

// storeDigestDomain separates the store digest from any other SHA-256 over
// the same bytes and versions its framing.
const storeDigestDomain = "sealgate trust store digest v1\x00"

// StoreDigest is "sha256:<hex>" over the files sorted by path: the domain
// string, the file count, then per file its path, its size and its raw
// SHA-256, each length-prefixed (8-byte big-endian), so that no two
// different lists share an encoding. This is the value measured into the
// PCR: a remote verifier that knows the trust store's files can recompute
// it. files must be sorted by path.
func StoreDigest(files []File) (string, error) {
	h := sha256.New()
	h.Write([]byte(storeDigestDomain))
	writeUint(h, uint64(len(files)))
	for _, f := range files {
		sum, err := hex.DecodeString(f.SHA256)
		if err != nil || len(sum) != sha256.Size {
			return "", fmt.Errorf("%s: sha256 %q is not 64 hex digits", f.Path, f.SHA256)
		}
		writeField(h, []byte(f.Path))
		writeUint(h, uint64(f.Size))
		writeField(h, sum)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func writeField(h hash.Hash, b []byte) {
	writeUint(h, uint64(len(b)))
	h.Write(b)
}

func writeUint(h hash.Hash, n uint64) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], n)
	h.Write(buf[:])
}

// diff compares the files on disk with the sealed list (both sorted by
// path) and returns the differences, sorted by path.
func diff(sealed, disk []File) []Difference {
	var out []Difference
	i, j := 0, 0
	for i < len(sealed) || j < len(disk) {
		switch {
		case j == len(disk) || i < len(sealed) && sealed[i].Path < disk[j].Path:
			out = append(out, Difference{Path: sealed[i].Path, Change: Removed})
			i++
		case i == len(sealed) || disk[j].Path < sealed[i].Path:
			out = append(out, Difference{Path: disk[j].Path, Change: Added})
			j++
		default:
			if sealed[i].SHA256 != disk[j].SHA256 || sealed[i].Size != disk[j].Size {
				out = append(out, Difference{Path: disk[j].Path, Change: Changed})
			}
			i++
			j++
		}
	}
	return out
}

// validPath reports whether p can name a file of the trust store in a
// record: relative, slash-separated, clean, not the record itself.
func validPath(p string) bool {
	if !fs.ValidPath(p) || p == "." || p == RecordName || len(p) > maxPathLen || path.Clean(p) != p || !utf8.ValidString(p) {
		return false
	}
	return !strings.ContainsFunc(p, unicode.IsControl)
}
