package verify

import (
	"fmt"

	"github.com/sealgate/sealgate/plugin/policy"
)

// checkPayload parses a payload whose signature has already verified and
// checks that it vouches for subject: the digest always, and the
// reference by identity (remap is RemapIdentity's prefixes).
func checkPayload(payload []byte, subject Subject, identity policy.SignedIdentity, remap *policy.Remap) (*Payload, error) {
	p, err := ParsePayload(payload)
	if err != nil {
		return nil, err
	}
	if p.Digest != subject.Digest {
		return nil, reasonf(ErrDigestMismatch, fmt.Sprintf("payload is for %s, not %s (signature copied from another image?)", p.Digest, truncate(subject.Digest, 80)))
	}
	switch identity {
	case policy.MatchAny:
		return p, nil
	case policy.MatchRepository, "":
		if err := matchRepository(p.DockerReference, subject.Repository); err != nil {
			return nil, err
		}
		return p, nil
	case policy.RemapIdentity:
		repo, _ := remap.Apply(subject.Repository)
		if err := matchRepository(p.DockerReference, repo); err != nil {
			return nil, err
		}
		return p, nil
	case policy.MatchExact:
		if err := matchExact(p.DockerReference, subject); err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, reasonf(ErrUnsupported, fmt.Sprintf("unknown signatures.signedIdentity %q", truncate(string(identity), 40)))
}

// matchRepository checks that a payload's docker-reference names repo,
// ignoring its tag or digest. Both sides are put in the canonical form
// rules use (policy.ParseImage: docker.io/library/..., one spelling per
// registry), so "nginx" and "registry-1.docker.io/library/nginx" match, and
// no spelling of another registry does.
func matchRepository(ref, repo string) error {
	want, err := policy.ParseImage(repo)
	if err != nil {
		return reasonf(ErrReferenceMismatch, fmt.Sprintf("image repository %q is not a valid repository: %v", truncate(repo, 200), err))
	}
	if ref == "" {
		return reasonf(ErrReferenceMismatch, fmt.Sprintf("payload names no repository (empty docker-reference), rule expects %s (signatures.signedIdentity)", repo))
	}
	got, err := policy.ParseImage(ref)
	if err != nil {
		return reasonf(ErrReferenceMismatch, fmt.Sprintf("payload names %q, which is not an image reference; rule expects %s (signatures.signedIdentity)", truncate(ref, 200), repo))
	}
	if got.Repository != want.Repository {
		return reasonf(ErrReferenceMismatch, fmt.Sprintf("payload names repository %s, rule expects %s (signatures.signedIdentity)", got.Repository, want.Repository))
	}
	return nil
}

// matchExact checks that a payload's docker-reference is the image's
// reference exactly: repository and tag, or, for an image named by digest
// alone, repository and that digest.
func matchExact(ref string, subject Subject) error {
	want := subject.Repository + ":" + subject.Tag
	if subject.Tag == "" {
		want = subject.Repository + "@" + subject.Digest
	}
	if ref == "" {
		return reasonf(ErrReferenceMismatch, fmt.Sprintf("payload names no reference (empty docker-reference), rule expects exactly %s (signatures.signedIdentity matchExact)", want))
	}
	got, err := policy.ParseImage(ref)
	if err != nil {
		return reasonf(ErrReferenceMismatch, fmt.Sprintf("payload names %q, which is not an image reference; rule expects exactly %s (signatures.signedIdentity matchExact)", truncate(ref, 200), want))
	}
	ok := got.Repository == subject.Repository
	if subject.Tag != "" {
		ok = ok && got.Tag == subject.Tag && got.Digest == ""
	} else {
		ok = ok && got.Tag == "" && got.Digest == subject.Digest
	}
	if !ok {
		return reasonf(ErrReferenceMismatch, fmt.Sprintf("payload names %s, rule expects exactly %s (signatures.signedIdentity matchExact)", truncate(ref, 200), want))
	}
	return nil
}
