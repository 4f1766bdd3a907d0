package verify

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"io"

	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/sealgate/sealgate/plugin/policy"
)

// ArtifactRef names the blob a bundle is verified for: its bytes, or its
// digest. Exactly one is set.
type ArtifactRef struct {
	// Data is read once, to its end.
	Data io.Reader
	// Digest is "sha256:<hex>" (or "sha512:<hex>", the digest npm
	// provenance statements name).
	Digest string
}

// VerifyBlobBundle verifies one Sigstore bundle (a message signature or a
// DSSE in-toto statement) for one blob against one authority, with the same
// code as image bundles: the Sigstore conformance client's verify-bundle.
// A DSSE statement must name the blob's digest (of any predicate type). It
// returns who signed and when, or an error wrapping one of the package's
// sentinels.
func (v *Verifier) VerifyBlobBundle(ctx context.Context, bundleJSON []byte, art ArtifactRef, a *policy.Authority) (Satisfier, error) {
	if err := ctx.Err(); err != nil {
		return Satisfier{}, err
	}
	if a == nil {
		return Satisfier{}, reasonf(ErrUnsupported, "no authority given")
	}
	if (art.Data == nil) == (art.Digest == "") {
		return Satisfier{}, reasonf(ErrUnsupported, "give the artifact's data or its digest, not both or neither")
	}
	if art.Digest != "" && !ValidDigest(art.Digest) {
		return Satisfier{}, reasonf(ErrUnsupported, "artifact digest "+truncate(art.Digest, 80)+" is not sha256:<64 hex> or sha512:<128 hex>")
	}
	name := authorityName(a, 0)
	pb, err := parseBundle(bundleJSON)
	if err != nil {
		return Satisfier{}, err
	}
	s := bundleSigned(pb)
	digest := art.Digest
	var sum *blobHasher
	switch {
	case pb.statement != nil:
		if digest == "" {
			if digest, err = statementDigestOf(art.Data, pb.statement); err != nil {
				return Satisfier{}, err
			}
		}
		if err := checkStatementSubject(pb.statement, digest); err != nil {
			return Satisfier{}, err
		}
		s.artifact = digestArtifact(digest)
	case digest != "":
		s.artifact = digestArtifact(digest)
	default:
		sum = newBlobHasher()
		r := io.TeeReader(art.Data, sum)
		used := false
		s.artifact = func() verify.ArtifactPolicyOption {
			if used { // the reader is spent: fail rather than verify nothing
				return verify.WithArtifactDigest("sha256", nil)
			}
			used = true
			return verify.WithArtifact(r)
		}
	}
	who, err := v.verifyWith(s, a, name)
	if err != nil {
		return Satisfier{}, named(err, name)
	}
	if sum != nil {
		digest = sum.digest()
	}
	predicateType := ""
	if pb.statement != nil {
		predicateType = pb.statement.PredicateType
	}
	return who.satisfier(name, KindBundle, digest, predicateType), nil
}

// statementDigestOf hashes data with the algorithms the statement's
// subjects use (sha256, sha512) and returns the digest some subject names,
// or the sha256 digest.
func statementDigestOf(data io.Reader, st *Statement) (string, error) {
	h := newBlobHasher()
	if _, err := io.Copy(h, data); err != nil {
		return "", errors.Join(reasonf(ErrUnsupported, "read the artifact"), err)
	}
	if d := "sha512:" + hex.EncodeToString(h.s512.Sum(nil)); st.Names(d) {
		return d, nil
	}
	return h.digest(), nil
}

// blobHasher digests a blob with SHA-256 and SHA-512 at once.
type blobHasher struct{ s256, s512 hash.Hash }

func newBlobHasher() *blobHasher { return &blobHasher{s256: sha256.New(), s512: sha512.New()} }

func (b *blobHasher) Write(p []byte) (int, error) {
	b.s256.Write(p)
	b.s512.Write(p)
	return len(p), nil
}

func (b *blobHasher) digest() string { return "sha256:" + hex.EncodeToString(b.s256.Sum(nil)) }
