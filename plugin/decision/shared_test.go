package decision

import (
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/verdict"
)

// fresh returns a copy of s in its own memory, as a verification makes it.
func fresh(s string) string { return string([]byte(s)) }

func TestSharedStrings(t *testing.T) {
	var s sharedStrings
	const keyID = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	origin := "referrer registry.example/app@sha256:" + strings.Repeat("a", 64)
	long := "material from " + origin
	digest := "sha256:" + strings.Repeat("d", 64)
	mk := func() cache.Verdict {
		return cache.Verdict{Allowed: true, Reasons: []string{fresh("verified by release"), fresh(long)},
			SatisfiedBy: []verdict.Satisfier{{Authority: fresh("release"), KeyID: fresh(keyID), Kind: fresh("bundle"), Origin: fresh(origin), Digest: fresh(digest)}}}
	}
	a, b := mk(), mk()
	bKeyID := b.SatisfiedBy[0].KeyID
	keyDigest := fresh(digest)
	sa, sb := s.verdict(a, keyDigest), s.verdict(b, fresh(digest))
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	if !same(sa.SatisfiedBy[0].KeyID, sb.SatisfiedBy[0].KeyID) || !same(sa.Reasons[0], sb.Reasons[0]) || !same(sa.SatisfiedBy[0].Authority, sb.SatisfiedBy[0].Authority) {
		t.Error("equal key IDs, authorities or short reasons of two verdicts are not one string")
	}
	if same(sa.Reasons[1], sb.Reasons[1]) || same(sa.SatisfiedBy[0].Origin, sb.SatisfiedBy[0].Origin) {
		t.Error("a verdict's own long reason or origin was shared")
	}
	if !same(b.SatisfiedBy[0].KeyID, bKeyID) || &b.SatisfiedBy[0] == &sb.SatisfiedBy[0] || &b.Reasons[0] == &sb.Reasons[0] {
		t.Error("the caller's slices were changed or reused")
	}
	if sb.SatisfiedBy[0].KeyID != keyID || sb.Reasons[1] != long || sb.SatisfiedBy[0].Origin != origin || sb.SatisfiedBy[0].Digest != digest {
		t.Error("values changed")
	}
	// One copy of a verdict's own strings: the digest is the key's, the
	// origin is within the reason that quotes it.
	if !same(sa.SatisfiedBy[0].Digest, keyDigest) {
		t.Error("the satisfier's digest is not the key's string")
	}
	if o, r := sa.SatisfiedBy[0].Origin, sa.Reasons[1]; uintptr(unsafe.Pointer(unsafe.StringData(o))) != uintptr(unsafe.Pointer(unsafe.StringData(r)))+uintptr(len("material from ")) {
		t.Error("the origin is not held within the reason that quotes it")
	}
	if other := s.verdict(cache.Verdict{SatisfiedBy: []verdict.Satisfier{{Origin: origin, Digest: "sha256:other"}}}, digest); other.SatisfiedBy[0].Origin != origin || other.SatisfiedBy[0].Digest != "sha256:other" {
		t.Errorf("a verdict without the quoting reason, or of another digest, changed: %+v", other.SatisfiedBy[0])
	}
	for i := range 2 * maxSharedStrings {
		s.verdict(cache.Verdict{Reasons: []string{"reason " + strconv.Itoa(i)}}, "")
	}
	if len(s.m) > maxSharedStrings {
		t.Errorf("%d strings shared, bound %d", len(s.m), maxSharedStrings)
	}
}
