package decision

import (
	"strings"
	"sync"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/verdict"
)

// maxSharedStrings bounds the strings an engine shares between verdicts;
// past it, new ones are kept as they are.
const maxSharedStrings = 4096

// maxSharedReason is the longest reason shared: longer ones name digests
// and are one verdict's own.
const maxSharedReason = 96

// sharedStrings holds one copy of the strings many verdicts repeat (the
// authority, the key ID or certificate identity, the kind and predicate
// type, the requirement, "verified by ..."), so that 10,000 verdicts
// signed by one key hold its ID once, not 10,000 times.
type sharedStrings struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *sharedStrings) get(v string) string {
	if v == "" {
		return v
	}
	if c, ok := s.m[v]; ok {
		return c
	}
	if s.m == nil {
		s.m = make(map[string]string)
	}
	if len(s.m) < maxSharedStrings {
		s.m[v] = v
	}
	return v
}

// verdict returns v holding shared strings. Its slices are new: the
// caller's are left as they were. A satisfier's digest that is the image's
// holds digest's bytes (the cache key's), and an origin that a reason
// quotes ("material from ...") holds the reason's: one copy each.
func (s *sharedStrings) verdict(v cache.Verdict, digest string) cache.Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(v.Reasons) > 0 {
		rs := make([]string, len(v.Reasons))
		for i, r := range v.Reasons {
			if len(r) <= maxSharedReason {
				r = s.get(r)
			}
			rs[i] = r
		}
		v.Reasons = rs
	}
	if len(v.SatisfiedBy) > 0 {
		by := make([]verdict.Satisfier, len(v.SatisfiedBy))
		for i, x := range v.SatisfiedBy {
			x.Authority, x.KeyID, x.Issuer, x.Subject = s.get(x.Authority), s.get(x.KeyID), s.get(x.Issuer), s.get(x.Subject)
			x.Kind, x.PredicateType, x.Requirement = s.get(x.Kind), s.get(x.PredicateType), s.get(x.Requirement)
			if x.Digest == digest {
				x.Digest = digest
			}
			x.Origin = within(v.Reasons, x.Origin)
			by[i] = x
		}
		v.SatisfiedBy = by
	}
	return v
}

// within returns sub as a substring of the first of texts that holds it,
// sharing that text's bytes, or sub itself.
func within(texts []string, sub string) string {
	if sub == "" {
		return sub
	}
	for _, t := range texts {
		if i := strings.Index(t, sub); i >= 0 {
			return t[i : i+len(sub)]
		}
	}
	return sub
}
