package decision

import (
	"context"
	"errors"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/policy"
)

// Checker fetches and verifies what a rule requires of one image: the slow
// path of a decision, when no cached verdict decides. It is an interface so
// that the engine, which the runtime's every request goes through, holds
// verdicts without linking the registry client and the Sigstore verifier
// (package check implements it).
type Checker interface {
	// Check fetches the material of c.Image and verifies it against
	// c.Rule. It always returns a verdict; Outcome.Err says when the
	// verdict is a denial because the check could not be made.
	Check(ctx context.Context, c Check) Outcome
	// PickPulled chooses, among the digests a runtime records for one
	// image pulled through tag, the one manifest that runs (see
	// Engine.PickPulled).
	PickPulled(ctx context.Context, tag string, candidates []string) (string, error)
}

// Check is one image whose material must be fetched and verified.
type Check struct {
	// Image is the reference, parsed, with the digest to verify.
	Image policy.Image
	// Tag, when set, is the tag Image.Digest was pulled through
	// (Request.Tag).
	Tag string
	// Rule is the matched rule, with signature or attestation
	// requirements.
	Rule *policy.Rule
}

// Outcome is what a check found. Verdict.VerifiedAt and Verdict.Clock
// are left for the engine to stamp with its own clocks.
type Outcome struct {
	Verdict cache.Verdict
	// Err is set when the check could not be made (the verdict is then a
	// denial saying why). When it wraps ErrUnreachable, the sources could
	// not be asked at all, and an earlier verdict may serve offline.
	Err error
}

// ErrUnreachable marks a check that failed because every signature source
// was unreachable or did not answer in time: the node is offline, and only
// then may a cached verdict decide in place of the sources.
var ErrUnreachable = errors.New("signature sources unreachable")

// ErrFetchTimeout is the cause of the context a Checker is given when the
// engine's own fetch budget (80% of the caller's deadline) ran out: the
// sources are as good as unreachable.
var ErrFetchTimeout = errors.New("signature sources did not answer in time")

// Requirement names, as reported in Satisfier.Requirement.
const (
	RequirementSignatures  = "signatures"
	RequirementAttestation = "attestation"
)
