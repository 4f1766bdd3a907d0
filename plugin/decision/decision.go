// Package decision makes one verdict on one image: it matches the policy,
// consults the verdict cache, fetches signatures from the sources and has
// them verified. The NRI plugin and `sealgate verify` both call it, so the
// shell command and the daemon can never disagree.
//
// The package does not log: a Decision carries everything a caller needs to
// log, count or print.
package decision

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
	"github.com/sealgate/sealgate/plugin/verify"
)

// Where a decision came from, as reported in Decision.Source.
const (
	// SourceVerified: signatures were fetched and verified for this decision.
	SourceVerified = "verified"
	// SourceCache: a verdict cached from an earlier verification decided.
	SourceCache = "cache"
	// SourceOfflineCache: sources were unreachable and a cached verdict
	// within the policy's offline age decided.
	SourceOfflineCache = "offline-cache"
	// SourcePolicy: the policy decided without signatures (an allow or deny
	// rule, the default, or an invalid request).
	SourcePolicy = "policy"
)

// DefaultRuleName is reported as the rule when the policy default decided.
const DefaultRuleName = "default"

// Request names the image of a container about to be created.
type Request struct {
	// Image is the reference as the runtime knows it ("nginx:1.25",
	// "registry.example.com/app@sha256:…").
	Image string
	// Digest is the manifest or index digest the runtime resolved. It is
	// what is verified; the name alone is never trusted. When empty, the
	// reference must carry a digest.
	Digest string
	// Namespace is the pod's namespace, for rule matching.
	Namespace string
}

// Decision is the outcome for one Request.
type Decision struct {
	Image   string `json:"image"`
	Digest  string `json:"digest"`
	Allowed bool   `json:"allowed"`
	Rule    string `json:"rule"`
	Mode    string `json:"mode"`
	// Reasons say why an image was denied (or would have been, in warn and
	// audit modes), or what allowed it.
	Reasons []string `json:"reasons"`
	Source  string   `json:"source"`
	// WouldDeny is set when warn or audit mode allowed an image that
	// enforce mode would have denied.
	WouldDeny bool `json:"wouldDeny,omitempty"`
	// SatisfiedBy lists the authorities whose signatures allowed the image.
	SatisfiedBy []verify.Satisfier `json:"satisfiedBy,omitempty"`
	// VerifiedAt is when the signatures behind the verdict were verified.
	VerifiedAt *time.Time `json:"verifiedAt,omitempty"`

	ref string // repository[:tag]@digest, for messages
}

// Err returns nil when the image is allowed and a *DeniedError otherwise.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &DeniedError{Decision: d}
}

// DeniedError is the error a denied image produces. Its text is what the
// kubelet or crictl user sees, so it names the image, its digest, the rule
// and the reason.
type DeniedError struct {
	Decision Decision
}

// Ref is the image as "repository[:tag]@digest", the way messages name it.
func (d Decision) Ref() string {
	if d.ref != "" {
		return d.ref
	}
	if d.Digest != "" && !strings.Contains(d.Image, "@") {
		return d.Image + "@" + d.Digest
	}
	return d.Image
}

func (e *DeniedError) Error() string {
	d := e.Decision
	ref := d.Ref()
	reason := strings.Join(d.Reasons, "; ")
	if reason == "" {
		reason = "no reason recorded"
	}
	return fmt.Sprintf("sealgate: denied %s (rule %s): %s", ref, d.Rule, reason)
}

// Engine decides. It is safe for concurrent use; build one per policy.
type Engine struct {
	policy   *policy.Policy
	source   source.Source
	verifier *verify.Verifier
	cache    cache.Store
	platform string
	now      func() time.Time
}

// Option configures an Engine.
type Option func(*Engine) error

// WithCache sets the verdict store (default: an in-memory LRU).
func WithCache(s cache.Store) Option {
	return func(e *Engine) error {
		if s == nil {
			return errors.New("nil cache store")
		}
		e.cache = s
		return nil
	}
}

// WithVerifier sets the signature verifier (default: verify.New()).
func WithVerifier(v *verify.Verifier) Option {
	return func(e *Engine) error {
		if v == nil {
			return errors.New("nil verifier")
		}
		e.verifier = v
		return nil
	}
}

// WithPlatform sets the node's platform ("os/arch[/variant]"), used to pick
// the platform manifest of an index (default: the running binary's).
func WithPlatform(p string) Option {
	return func(e *Engine) error {
		if strings.Count(p, "/") < 1 {
			return fmt.Errorf("platform %q: want os/arch[/variant]", p)
		}
		e.platform = p
		return nil
	}
}

// WithClock sets the clock used to stamp verdicts (for tests).
func WithClock(now func() time.Time) Option {
	return func(e *Engine) error {
		e.now = now
		return nil
	}
}

// New builds an engine for p that fetches signatures from src.
func New(p *policy.Policy, src source.Source, opts ...Option) (*Engine, error) {
	if p == nil {
		return nil, errors.New("new decision engine: nil policy")
	}
	if src == nil {
		return nil, errors.New("new decision engine: nil source")
	}
	e := &Engine{policy: p, source: src, platform: runtime.GOOS + "/" + runtime.GOARCH, now: time.Now}
	for _, o := range opts {
		if err := o(e); err != nil {
			return nil, fmt.Errorf("new decision engine: %w", err)
		}
	}
	if e.cache == nil {
		e.cache = cache.NewMemory(0)
	}
	if e.verifier == nil {
		v, err := verify.New()
		if err != nil {
			return nil, fmt.Errorf("new decision engine: %w", err)
		}
		e.verifier = v
	}
	return e, nil
}

// Policy returns the policy the engine enforces.
func (e *Engine) Policy() *policy.Policy { return e.policy }

// Decide returns the verdict for req. It never returns without a verdict:
// every failure (bad reference, unreachable registry, expired context) is a
// denial with a reason, which warn and audit modes turn into an allow.
func (e *Engine) Decide(ctx context.Context, req Request) Decision {
	d := Decision{Image: req.Image, Digest: req.Digest, Mode: string(e.policy.Mode), Rule: DefaultRuleName, Source: SourcePolicy}
	img, err := policy.ParseImage(req.Image)
	if err != nil {
		return e.finish(d, nil, false, fmt.Sprintf("image reference %q: %v", req.Image, err))
	}
	switch {
	case req.Digest == "" && img.Digest == "":
		return e.finish(d, nil, false, "the runtime gave no image digest and the reference has none; a name alone is never trusted")
	case req.Digest == "":
		d.Digest = img.Digest
	case img.Digest != "" && img.Digest != req.Digest:
		return e.finish(d, nil, false, fmt.Sprintf("reference digest %s differs from the runtime's digest %s", img.Digest, req.Digest))
	}
	img.Digest = d.Digest
	d.ref = refString(img)

	rule := e.policy.Match(img, req.Namespace)
	if rule == nil {
		if e.policy.Default == policy.ActionAllow {
			return e.finish(d, nil, true, "no rule matches; the policy default allows")
		}
		return e.finish(d, nil, false, "no rule matches this image and the policy default is deny; add a rule for it")
	}
	d.Rule, d.Mode = rule.Name, string(rule.Mode)
	switch rule.Action {
	case policy.ActionAllow:
		return e.finish(d, rule, true, "allowed by rule without signature verification")
	case policy.ActionDeny:
		return e.finish(d, rule, false, "the rule denies this image")
	}
	if rule.Signatures == nil {
		// Attestation-only rules are verified from a later release on;
		// until then they cannot be satisfied.
		return e.finish(d, rule, false, "the rule requires attestations, which this build cannot verify yet")
	}

	key := cache.Key{Digest: d.Digest, Repository: img.Repository, Rule: rule.Name, PolicyDigest: e.policy.Digest}
	if v, ok := e.cache.Get(key); ok {
		d.Source = SourceCache
		return e.fromVerdict(d, rule, v)
	}

	v := e.verify(ctx, img, rule)
	if v.err == nil && v.verdict.Allowed {
		e.cache.Put(key, v.verdict)
	}
	d.Source = SourceVerified
	if v.err != nil {
		d.Source = SourcePolicy
	}
	d.SatisfiedBy = v.by
	return e.fromVerdict(d, rule, v.verdict)
}

type outcome struct {
	verdict cache.Verdict
	by      []verify.Satisfier
	err     error // operational failure (the verdict is a denial)
}

// verify fetches the signatures for img and checks them against rule.
func (e *Engine) verify(ctx context.Context, img policy.Image, rule *policy.Rule) outcome {
	req := rule.Signatures
	repo, err := name.NewRepository(img.Repository, name.WeakValidation)
	if err != nil {
		return failed(fmt.Errorf("repository %q: %w", img.Repository, err))
	}
	target := repo.Digest(img.Digest)
	sigs, err := e.source.Signatures(ctx, target)
	if err != nil {
		return failed(fetchErr(ctx, err))
	}
	res := e.verifier.VerifySignatures(ctx, verify.Subject{Repository: img.Repository, Digest: img.Digest}, sigs, req)
	if res.Satisfied {
		return e.allowed(res)
	}

	// The digest may name an index whose signatures sit on its platform
	// manifest only. That satisfies the rule only when the rule says so.
	m, err := e.source.Describe(ctx, target)
	if err != nil || !m.IsIndex() {
		return denied(res.Reasons)
	}
	child := m.PlatformChild(e.platform)
	if child == "" {
		return denied(append(res.Reasons, fmt.Sprintf("index has no manifest for platform %s", e.platform)))
	}
	childSigs, err := e.source.Signatures(ctx, repo.Digest(child))
	if err != nil {
		return failed(fetchErr(ctx, err))
	}
	childRes := e.verifier.VerifySignatures(ctx, verify.Subject{Repository: img.Repository, Digest: child}, childSigs, req)
	switch {
	case childRes.Satisfied && req.AcceptPlatformSignature:
		return e.allowed(childRes)
	case childRes.Satisfied:
		return denied([]string{fmt.Sprintf("index %s is not signed; only its %s manifest %s is, and the rule requires a signature over the index (set signatures.acceptPlatformSignature: true to accept it)", img.Digest, e.platform, child)})
	case req.AcceptPlatformSignature:
		reasons := append([]string{"index: " + strings.Join(res.Reasons, "; ")}, "platform manifest "+child+": "+strings.Join(childRes.Reasons, "; "))
		return denied(reasons)
	}
	return denied(res.Reasons)
}

func (e *Engine) allowed(res verify.Result) outcome {
	by := make([]string, 0, len(res.By))
	for _, s := range res.By {
		by = append(by, s.Authority)
	}
	return outcome{verdict: cache.Verdict{Allowed: true, Reasons: []string{"signed by " + strings.Join(by, ", ")}, SatisfiedBy: by, VerifiedAt: e.now()}, by: res.By}
}

func denied(reasons []string) outcome {
	if len(reasons) == 0 {
		reasons = []string{"signatures did not satisfy the rule"}
	}
	return outcome{verdict: cache.Verdict{Allowed: false, Reasons: reasons}}
}

func failed(err error) outcome {
	return outcome{verdict: cache.Verdict{Allowed: false, Reasons: []string{err.Error()}}, err: err}
}

// fetchErr turns a source failure into a reason that says what to do.
func fetchErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("deadline expired while fetching signatures (the registry is slow or unreachable; raise --deadline or pre-pull the image): %w", err)
	case errors.Is(err, source.ErrUnreachable):
		return fmt.Errorf("the registry was unreachable and no cached verdict exists: %w", err)
	}
	return fmt.Errorf("fetch signatures: %w", err)
}

// fromVerdict fills d from a verdict and applies the rule's mode.
func (e *Engine) fromVerdict(d Decision, rule *policy.Rule, v cache.Verdict) Decision {
	if !v.VerifiedAt.IsZero() {
		t := v.VerifiedAt
		d.VerifiedAt = &t
	}
	if len(d.SatisfiedBy) == 0 && v.Allowed {
		for _, a := range v.SatisfiedBy {
			d.SatisfiedBy = append(d.SatisfiedBy, verify.Satisfier{Authority: a})
		}
	}
	return e.finish(d, rule, v.Allowed, v.Reasons...)
}

// finish sets the verdict, applying warn and audit modes.
func (e *Engine) finish(d Decision, rule *policy.Rule, allowed bool, reasons ...string) Decision {
	d.Reasons = append([]string(nil), reasons...)
	d.Allowed = allowed
	mode := e.policy.Mode
	if rule != nil {
		mode = rule.Mode
	}
	d.Mode = string(mode)
	if !allowed && mode != policy.ModeEnforce {
		d.Allowed, d.WouldDeny = true, true
	}
	return d
}

func refString(img policy.Image) string {
	s := img.Repository
	if img.Tag != "" {
		s += ":" + img.Tag
	}
	return s + "@" + img.Digest
}
