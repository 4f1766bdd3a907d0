package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"sort"
)

// digestDomain separates this digest from any other sha256 over the same
// bytes, and versions the framing.
const digestDomain = "sealgate policy digest v1\x00"

// digest hashes the policy bytes and every referenced file (path and
// content, sorted by path). Each field is length-prefixed and the file count
// is written first, so no two different inputs share a framing: moving bytes
// between the policy, a path and a file's content changes the digest.
func digest(policy []byte, files map[string][]byte) (string, []string) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	h := sha256.New()
	h.Write([]byte(digestDomain))
	field(h, policy)
	writeLen(h, len(paths))
	for _, p := range paths {
		field(h, []byte(p))
		field(h, files[p])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), paths
}

func field(h hash.Hash, b []byte) {
	writeLen(h, len(b))
	h.Write(b)
}

func writeLen(h hash.Hash, n int) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(n))
	h.Write(buf[:])
}
