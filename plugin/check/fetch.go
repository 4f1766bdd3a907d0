package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
	"github.com/sealgate/sealgate/plugin/verify"
)

// verify fetches what rule needs for img and checks it. For an index whose
// own signatures do not satisfy the rule, the platform manifest is checked
// too: it satisfies only when the rule accepts platform signatures, and
// otherwise it makes the denial say why.
func (c *Checker) verify(ctx context.Context, img policy.Image, rule *policy.Rule) decision.Outcome {
	loc := img.Location
	if loc == "" {
		loc = img.Repository
	}
	repo, err := name.NewRepository(loc, name.WeakValidation)
	if err != nil {
		return failed(fmt.Errorf("repository %q: %w", loc, err))
	}
	res := c.check(ctx, repo, img.Repository, img.Tag, img.Digest, rule)
	if res.Err != nil || res.Verdict.Allowed {
		return res
	}
	m, err := c.source.Describe(ctx, repo.Digest(img.Digest))
	if err != nil || !m.IsIndex() {
		return res
	}
	child, err := m.PlatformChild(c.platform)
	if err != nil {
		return denied(append(res.Verdict.Reasons, fmt.Sprintf("index %s: %v; sign the index itself", img.Digest, err)))
	}
	if child == "" {
		return denied(append(res.Verdict.Reasons, fmt.Sprintf("index has no manifest for platform %s", c.platformName)))
	}
	childRes := c.check(ctx, repo, img.Repository, img.Tag, child, rule)
	accept := rule.Signatures != nil && rule.Signatures.AcceptPlatformSignature
	switch {
	case childRes.Err != nil:
		return childRes
	case childRes.Verdict.Allowed && accept:
		return childRes
	case childRes.Verdict.Allowed:
		return denied([]string{fmt.Sprintf("index %s is not signed; only its %s manifest %s is, and the rule requires a signature over the index (set signatures.acceptPlatformSignature: true to accept it)", img.Digest, c.platformName, child)})
	case accept:
		return denied([]string{"index: " + strings.Join(res.Verdict.Reasons, "; "), "platform manifest " + child + ": " + strings.Join(childRes.Verdict.Reasons, "; ")})
	}
	return res
}

// TagResolver is a source that can say which digest a tag names now
// (source.Registry).
type TagResolver interface {
	Resolve(ctx context.Context, tag name.Tag) (string, error)
}

// verifyPulledThrough decides img.Digest, a manifest the runtime pulled
// through tag and recorded without the index the tag may name (CRI-O).
// When the tag names an index that lists the digest, the digest is one of
// its platform manifests: the index's signatures satisfy the rule, the
// manifest's own only under acceptPlatformSignature. Otherwise, or when
// the source cannot resolve tags, the digest is decided alone.
func (c *Checker) verifyPulledThrough(ctx context.Context, img policy.Image, tag string, rule *policy.Rule) decision.Outcome {
	tr, ok := c.source.(TagResolver)
	t, err := name.NewTag(tag, name.WeakValidation)
	if !ok || err != nil {
		return c.verify(ctx, img, rule)
	}
	repo := t.Context()
	indexDigest, err := tr.Resolve(ctx, t)
	switch {
	case errors.Is(err, source.ErrNotFound):
		return c.verify(ctx, img, rule)
	case err != nil:
		return failed(fmt.Errorf("resolve %s, which %s was pulled through: %w", t, img.Digest, err))
	case indexDigest == img.Digest:
		return c.verify(ctx, img, rule)
	}
	m, err := c.source.Describe(ctx, repo.Digest(indexDigest))
	if err != nil {
		return failed(fmt.Errorf("describe %s@%s: %w", repo, indexDigest, err))
	}
	if !m.IsIndex() || !m.Lists(img.Digest) {
		// The tag moved on, or names another image: the digest alone.
		return c.verify(ctx, img, rule)
	}
	idx := c.check(ctx, repo, img.Repository, img.Tag, indexDigest, rule)
	if idx.Err != nil {
		return idx
	}
	if idx.Verdict.Allowed {
		idx.Verdict.Reasons = append(idx.Verdict.Reasons, fmt.Sprintf("the index %s (%s) lists the platform manifest %s the runtime pulled", indexDigest, t, img.Digest))
		return idx
	}
	own := c.check(ctx, repo, img.Repository, img.Tag, img.Digest, rule)
	accept := rule.Signatures != nil && rule.Signatures.AcceptPlatformSignature
	switch {
	case own.Err != nil:
		return own
	case own.Verdict.Allowed && accept:
		return own
	case own.Verdict.Allowed:
		return denied([]string{fmt.Sprintf("index %s (%s) is not signed; only its platform manifest %s, which the runtime pulled, is, and the rule requires a signature over the index (set signatures.acceptPlatformSignature: true to accept it)", indexDigest, t, img.Digest)})
	}
	return denied([]string{"index " + indexDigest + ": " + strings.Join(idx.Verdict.Reasons, "; "), "platform manifest " + img.Digest + ": " + strings.Join(own.Verdict.Reasons, "; ")})
}

// PickPulled chooses, among the digests a runtime records for one image
// pulled through tag (CRI-O lists both the index and the platform manifest
// it chose, and pairs names with digests that never went together), the
// one manifest that runs: the tag must name one of them now, an index, and
// that index must list exactly one of the others. Anything else is
// ambiguous and an error: a candidate is never taken on a guess.
func (c *Checker) PickPulled(ctx context.Context, tag string, candidates []string) (string, error) {
	tr, ok := c.source.(TagResolver)
	if !ok {
		return "", fmt.Errorf("the signature sources cannot resolve %s to choose among %v", tag, candidates)
	}
	t, err := name.NewTag(tag, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("tag %q: %w", tag, err)
	}
	index, err := tr.Resolve(ctx, t)
	if err != nil {
		return "", fmt.Errorf("choose among the digests %v recorded for %s: %w", candidates, t, err)
	}
	if !slices.Contains(candidates, index) {
		return "", fmt.Errorf("%s names %s now, none of the digests %v the runtime recorded (the tag moved)", t, index, candidates)
	}
	m, err := c.source.Describe(ctx, t.Context().Digest(index))
	if err != nil {
		return "", fmt.Errorf("describe %s@%s: %w", t.Context(), index, err)
	}
	var listed []string
	for _, cand := range candidates {
		if cand != index && m.Lists(cand) {
			listed = append(listed, cand)
		}
	}
	if !m.IsIndex() || len(listed) != 1 {
		return "", fmt.Errorf("the digests %v recorded for %s are ambiguous (%s lists %d of them)", candidates, t, index, len(listed))
	}
	return listed[0], nil
}

// material is what the sources hold for one digest.
type material struct {
	sigs    []artifact.Signature
	atts    []artifact.Attestation
	bundles []artifact.Bundle
}

func (m material) empty() bool { return len(m.sigs) == 0 && len(m.atts) == 0 && len(m.bundles) == 0 }

func (m *material) add(o material) {
	m.sigs = append(m.sigs, o.sigs...)
	m.atts = append(m.atts, o.atts...)
	m.bundles = append(m.bundles, o.bundles...)
}

// fetch gets, concurrently, only what rule needs: classic signatures for a
// signatures requirement, classic attestations for attestation
// requirements, and bundles (which carry either) for both. One part failing
// does not stop the others: what was fetched is still checked (see check).
func (c *Checker) fetch(ctx context.Context, img name.Digest, rule *policy.Rule, bundles bool) (m material, parts int, errs []error) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	run := func(get func() error) {
		parts++
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := get(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	switch {
	case bundles:
		run(func() (err error) { m.bundles, err = c.source.Bundles(ctx, img); return err })
	default:
		if rule.Signatures != nil {
			run(func() (err error) { m.sigs, err = c.source.Signatures(ctx, img); return err })
		}
		if len(rule.Attestations) > 0 {
			run(func() (err error) { m.atts, err = c.source.Attestations(ctx, img); return err })
		}
	}
	wg.Wait()
	return m, parts, errs
}

// check fetches and verifies the material of one digest in two stages:
// first the scheme that satisfied this repository last time (by default
// the OCI referrers, where Sigstore bundles are, for signatures and
// attestations at once), and only when that does not satisfy the rule,
// the other (cosign's .sig and .att tags). Verification always sees
// everything fetched, so the decision.Outcome is the one a single fetch of both
// would give; what is saved is the requests and round trips an image
// signed one way spends on the other.
func (c *Checker) check(ctx context.Context, repo name.Repository, repository, tag, digest string, rule *policy.Rule) decision.Outcome {
	img := repo.Digest(digest)
	classicFirst := c.prefer.classicFirst(repository)
	var (
		m     material
		parts int
		errs  []error
	)
	for stage := range 2 {
		bundles := (stage == 0) != classicFirst
		got, n, errs1 := c.fetch(ctx, img, rule, bundles)
		m.add(got)
		parts += n
		errs = append(errs, errs1...)
		if stage == 0 && (m.empty() || len(errs) > 0) {
			continue
		}
		out := c.evaluate(ctx, m, parts, errs, repository, tag, digest, rule)
		if out.Err == nil && out.Verdict.Allowed {
			c.prefer.satisfied(repository, !bundles)
			return out
		}
		if stage == 1 {
			return out
		}
	}
	return c.evaluate(ctx, m, parts, errs, repository, tag, digest, rule)
}

// evaluate verifies every requirement of rule against the material
// fetched for one digest.
//
// An earlier verdict may serve offline only when every part of the fetch
// failed because the sources did not answer: a source that answered (even
// "nothing here") means the node is not offline. Material that was fetched
// is always checked: if it satisfies the rule the image is allowed; if
// not, the image is denied, whatever failed beside it, so an unreachable
// referrers endpoint can never turn a fetched, failing signature into an
// offline allow.
func (c *Checker) evaluate(ctx context.Context, m material, parts int, errs []error, repository, tag, digest string, rule *policy.Rule) decision.Outcome {
	if len(errs) > 0 && m.empty() {
		err := errors.Join(errs...)
		if len(errs) < parts || !allUnreachable(ctx, errs) {
			// Something answered: not offline. %v drops the
			// unreachable marks, so no cached verdict serves.
			return failed(fmt.Errorf("fetch signatures (the sources answered in part): %v", fetchErr(ctx, err)))
		}
		return failed(fetchErr(ctx, err))
	}
	subj := verify.Subject{Repository: repository, Digest: digest, Tag: tag}
	var (
		by      []verify.Satisfier
		reasons []string
	)
	if req := rule.Signatures; req != nil {
		res := c.verifier.VerifySignaturesAndBundles(ctx, subj, m.sigs, m.bundles, req)
		if !res.Satisfied {
			reasons = append(reasons, res.Reasons...)
		}
		by = appendRequirement(by, decision.RequirementSignatures, res.By)
	}
	for _, req := range rule.Attestations {
		res := c.verifier.VerifyAttestations(ctx, subj, m.atts, m.bundles, req)
		if !res.Satisfied {
			reasons = append(reasons, "attestation "+req.PredicateType+": "+strings.Join(res.Reasons, "; "))
		}
		by = appendRequirement(by, decision.RequirementAttestation+" "+req.PredicateType, res.By)
	}
	if len(reasons) > 0 {
		for _, err := range errs {
			reasons = append(reasons, "also: "+fetchErr(ctx, err).Error())
		}
		return denied(reasons)
	}
	return c.allowed(by)
}

// allUnreachable reports whether every fetch failure was the sources not
// answering (unreachable, or out of time).
func allUnreachable(ctx context.Context, errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, source.ErrUnreachable) && !errors.Is(context.Cause(ctx), decision.ErrFetchTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return false
		}
	}
	return true
}

func appendRequirement(dst []verify.Satisfier, requirement string, by []verify.Satisfier) []verify.Satisfier {
	for _, s := range by {
		s.Requirement = requirement
		dst = append(dst, s)
	}
	return dst
}

func (c *Checker) allowed(by []verify.Satisfier) decision.Outcome {
	names := make([]string, 0, len(by))
	for _, s := range by {
		if !slices.Contains(names, s.Authority) {
			names = append(names, s.Authority)
		}
	}
	reasons := []string{"verified by " + strings.Join(names, ", ")}
	var origins []string
	for _, s := range by {
		if s.Origin != "" && !slices.Contains(origins, s.Origin) {
			origins = append(origins, s.Origin)
		}
	}
	if len(origins) > 0 {
		reasons = append(reasons, "material from "+strings.Join(origins, "; "))
	}
	return decision.Outcome{Verdict: cache.Verdict{Allowed: true, Reasons: reasons, SatisfiedBy: by}}
}

func denied(reasons []string) decision.Outcome {
	if len(reasons) == 0 {
		reasons = []string{"signatures did not satisfy the rule"}
	}
	return decision.Outcome{Verdict: cache.Verdict{Allowed: false, Reasons: reasons}}
}

func failed(err error) decision.Outcome {
	return decision.Outcome{Verdict: cache.Verdict{Allowed: false, Reasons: []string{err.Error()}}, Err: err}
}

// fetchErr turns a source failure into a reason that says what to do.
func fetchErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(context.Cause(ctx), decision.ErrFetchTimeout):
		return fmt.Errorf("%w within the decision's deadline: %v", decision.ErrFetchTimeout, err)
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("deadline expired while fetching signatures (the registry is slow or unreachable; raise --deadline or pre-pull the image): %w", err)
	case errors.Is(err, source.ErrUnreachable):
		return err
	}
	return fmt.Errorf("fetch signatures: %w", err)
}
