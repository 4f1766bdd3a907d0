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
	"strings"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/verdict"
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
	// Tag, when set, is a tag Digest was pulled through, where the
	// runtime records the platform manifest it chose rather than the
	// index the tag names (CRI-O). When the tag names an index that lists
	// Digest, Digest is one of its platform manifests: the index's
	// signatures count, and Digest's own only under
	// acceptPlatformSignature, as for an index containerd pulled.
	// Otherwise Digest is decided alone.
	Tag string
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
	SatisfiedBy []verdict.Satisfier `json:"satisfiedBy,omitempty"`
	// VerifiedAt is when the signatures behind the verdict were verified.
	VerifiedAt time.Time `json:"verifiedAt,omitzero"`

	img policy.Image // the parsed reference with its digest, for Ref
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
	if d.img.Digest != "" {
		return refString(d.img)
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
	policy     *policy.Policy
	checker    Checker
	cache      cache.Store // verdicts verified by this engine
	offline    cache.Store // verdicts that survive restarts; nil without
	revalidate time.Duration
	now        func() time.Time
	mono       func() time.Duration
	// noOffline, when set, says why no verdict may serve offline: the
	// clock its age is measured on cannot be trusted.
	noOffline string
	// denials remembers verified denials for denialMemory; nil: never.
	denials      cache.Store
	denialMemory time.Duration
	refs         refCache
	shared       sharedStrings
	hits, misses atomic.Int64
}

// DefaultRevalidateAfter is how long a verdict decides without asking the
// sources again.
const DefaultRevalidateAfter = time.Hour

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

// WithOfflineStore sets the store of verdicts that survive restarts (the
// persisted, TPM-authenticated cache). Verified allows are written to it;
// its verdicts decide only while every signature source is unreachable, and
// only within the policy's offline.maxVerdictAge.
func WithOfflineStore(s cache.Store) Option {
	return func(e *Engine) error {
		if s == nil {
			return errors.New("nil offline store")
		}
		e.offline = s
		return nil
	}
}

// WithRevalidateAfter sets how long a verdict this engine verified decides
// without asking the sources again (default DefaultRevalidateAfter). After
// that, the next decision re-verifies, and if the sources are unreachable
// the verdict serves only within offline.maxVerdictAge.
func WithRevalidateAfter(d time.Duration) Option {
	return func(e *Engine) error {
		if d <= 0 {
			return fmt.Errorf("revalidate after %s: must be positive", d)
		}
		e.revalidate = d
		return nil
	}
}

// WithMonotonicClock sets a clock the host cannot set back (the TPM's
// clock, as read at start-up and extrapolated with the process's monotonic
// clock, so that deciding never needs the TPM). Verdicts are stamped with
// it and their age is the larger of its measure and the wall clock's.
func WithMonotonicClock(now func() time.Duration) Option {
	return func(e *Engine) error {
		e.mono = now
		return nil
	}
}

// WithOfflineUnavailable turns offline verdicts off, for reason: the TPM's
// clock, on which their age is measured, went back or may have lost time,
// so no verdict's age can be established. Online decisions are unchanged.
func WithOfflineUnavailable(reason string) Option {
	return func(e *Engine) error {
		if reason == "" {
			return errors.New("offline unavailable without a reason")
		}
		e.noOffline = reason
		return nil
	}
}

// DefaultDenialMemory is how long a verified denial is remembered.
const DefaultDenialMemory = 30 * time.Second

// WithDenialMemory sets how long a denial that came from verification
// (material found wanting, or none at all) decides again without asking
// the sources, so that a pod crash-looping on an unsigned image does not
// hit the registry on every retry. Zero turns it off. A denial because the
// sources could not be reached is never remembered. The memory lives in
// the engine, so a re-seal, which builds a new engine, drops it.
func WithDenialMemory(d time.Duration) Option {
	return func(e *Engine) error {
		if d < 0 {
			return fmt.Errorf("denial memory %s: must not be negative", d)
		}
		e.denialMemory = d
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

// New builds an engine for p that has c check what no verdict decides.
func New(p *policy.Policy, c Checker, opts ...Option) (*Engine, error) {
	if p == nil {
		return nil, errors.New("new decision engine: nil policy")
	}
	if c == nil {
		return nil, errors.New("new decision engine: nil checker")
	}
	e := &Engine{policy: p, checker: c, now: time.Now, revalidate: DefaultRevalidateAfter, denialMemory: DefaultDenialMemory}
	for _, o := range opts {
		if err := o(e); err != nil {
			return nil, fmt.Errorf("new decision engine: %w", err)
		}
	}
	if e.denialMemory > 0 {
		e.denials = cache.NewMemory(maxRememberedDenials)
	}
	if e.cache == nil {
		e.cache = cache.NewMemory(0)
	}
	return e, nil
}

// CacheCounts is how many decisions a cached verdict or a remembered
// denial made (hits), and how many asked the sources (misses).
func (e *Engine) CacheCounts() (hits, misses int64) { return e.hits.Load(), e.misses.Load() }

// CachedVerdicts is how many verdicts the engine holds in memory (0 when
// its store does not say).
func (e *Engine) CachedVerdicts() int {
	if l, ok := e.cache.(interface{ Len() int }); ok {
		return l.Len()
	}
	return 0
}

// Policy returns the policy the engine enforces.
func (e *Engine) Policy() *policy.Policy { return e.policy }

// Decide returns the verdict for req. It never returns without a verdict:
// every failure (bad reference, unreachable registry, expired context) is a
// denial with a reason, which warn and audit modes turn into an allow.
func (e *Engine) Decide(ctx context.Context, req Request) Decision {
	q := e.quick(req)
	if q.done {
		return q.d
	}
	e.misses.Add(1) // counted here, not in quick: Quick and then Decide is one decision
	d, img, rule, key := q.d, q.img, q.rule, q.key
	v := e.checker.Check(e.fetchContext(ctx), Check{Image: img, Tag: req.Tag, Rule: rule})
	switch {
	case v.Err == nil:
		v.Verdict = e.shared.verdict(v.Verdict, key.Digest)
		if v.Verdict.Allowed {
			// Stamped here, on the engine's clocks, whoever checked.
			v.Verdict.VerifiedAt = e.now()
			if e.mono != nil {
				v.Verdict.Clock = e.mono()
			}
			e.cache.Put(key, v.Verdict)
			if e.offline != nil && validUntil(v.Verdict).IsZero() {
				e.offline.Put(key, v.Verdict)
			}
		} else if e.denials != nil {
			// Material verified and found wanting, or none at all: the
			// same answer for a while, without asking again.
			dv := v.Verdict
			dv.VerifiedAt = e.now()
			dv.Reasons = append([]string{"denied again without asking the sources: the same image was verified and denied at " + dv.VerifiedAt.UTC().Format(time.RFC3339) +
				" (denials are remembered for " + e.denialMemory.String() + ")"}, v.Verdict.Reasons...)
			e.denials.Put(key, dv)
		}
		d.Source = SourceVerified
	case errors.Is(v.Err, ErrUnreachable) || errors.Is(v.Err, ErrFetchTimeout):
		// Only when the sources could not be asked may an earlier
		// verdict decide; a signature that was fetched and failed never
		// is overridden.
		if cached, ok := e.offlineVerdict(key); ok {
			d.Source = SourceOfflineCache
			cached.Reasons = append([]string{fmt.Sprintf("signature sources unreachable; verdict verified at %s (%s ago) serves offline, within offline.maxVerdictAge %s",
				cached.VerifiedAt.UTC().Format(time.RFC3339), e.age(cached).Round(time.Second), e.policy.Offline.MaxVerdictAge)}, cached.Reasons...)
			return e.fromVerdict(d, rule, cached)
		}
		d.Source = SourcePolicy
		why := "none verified, or older than offline.maxVerdictAge " + e.policy.Offline.MaxVerdictAge.String()
		if e.noOffline != "" {
			why = "offline verdicts are off: " + e.noOffline
		}
		v.Verdict.Reasons = []string{"the registry was unreachable and no valid cached verdict exists (" + why + "): " + v.Err.Error()}
	default:
		d.Source = SourcePolicy
	}
	return e.fromVerdict(d, rule, v.Verdict)
}

// PickPulled chooses, among the digests a runtime records for one image
// pulled through tag (CRI-O lists both the index and the platform manifest
// it chose, and pairs names with digests that never went together), the
// one manifest that runs: the tag must name one of them now, an index, and
// that index must list exactly one of the others. Anything else is
// ambiguous and an error: a candidate is never taken on a guess.
func (e *Engine) PickPulled(ctx context.Context, tag string, candidates []string) (string, error) {
	return e.checker.PickPulled(e.fetchContext(ctx), tag, candidates)
}

// Quick decides req when that needs no I/O: the policy alone decides (a
// static rule, the default, a bad request), or a cached verdict (or a
// remembered denial) does. It reports false when the signature sources
// must be asked; Decide then does. The runtime's hot path calls it
// without a goroutine or a timer.
func (e *Engine) Quick(req Request) (Decision, bool) {
	q := e.quick(req)
	return q.d, q.done
}

// quickResult is what quick found: a decision (done), or what the slow
// path needs.
type quickResult struct {
	d    Decision
	done bool
	img  policy.Image
	rule *policy.Rule
	key  cache.Key
}

// pulledThroughKey joins a repository and the tag a digest was pulled
// through in a cache key; a repository name holds no space.
const pulledThroughKey = " pulled-through "

func (e *Engine) quick(req Request) quickResult {
	d, img, rule, problem := e.match(req)
	q := quickResult{d: d, done: true, img: img, rule: rule}
	switch {
	case problem != "":
		q.d = e.finish(d, rule, false, problem)
		return q
	case rule == nil && e.policy.Default == policy.ActionAllow:
		q.d = e.finish(d, nil, true, reasonDefaultAllows...)
		return q
	case rule == nil:
		q.d = e.finish(d, nil, false, reasonDefaultDenies...)
		return q
	case rule.Action == policy.ActionAllow:
		q.d = e.finish(d, rule, true, reasonRuleAllows...)
		return q
	case rule.Action == policy.ActionDeny:
		q.d = e.finish(d, rule, false, reasonRuleDenies...)
		return q
	}
	q.key = cache.Key{Digest: d.Digest, Repository: img.Repository, Rule: rule.Name, PolicyDigest: e.policy.Digest}
	if rule.Signatures != nil && rule.Signatures.SignedIdentity == policy.MatchExact {
		// The verdict holds for this very reference only.
		q.key.Repository += ":" + img.Tag
	}
	if req.Tag != "" {
		// Decided through the index the tag names (Decide's
		// verifyPulledThrough), which may vouch for the digest where its
		// own signature does not, or not where it does: not the verdict of
		// the digest alone, and the same request always gets the same
		// answer whichever was decided first.
		q.key.Repository += pulledThroughKey + req.Tag
	}
	if v, ok := e.cache.Get(q.key); ok && e.age(v) < e.revalidate && !e.lapsed(v) {
		e.hits.Add(1)
		d.Source = SourceCache
		q.d = e.fromVerdict(d, rule, v)
		return q
	}
	if e.denials != nil {
		if v, ok := e.denials.Get(q.key); ok && e.now().Sub(v.VerifiedAt) < e.denialMemory {
			e.hits.Add(1)
			d.Source = SourceCache
			q.d = e.fromVerdict(d, rule, v)
			return q
		}
	}
	q.d, q.done = d, false
	return q
}

// The policy's own reasons, shared by every decision that gives them.
var (
	reasonDefaultAllows = []string{"no rule matches; the policy default allows"}
	reasonDefaultDenies = []string{"no rule matches this image and the policy default is deny; add a rule for it"}
	reasonRuleAllows    = []string{"allowed by rule without signature verification"}
	reasonRuleDenies    = []string{"the rule denies this image"}
)

// validUntil is when a verdict that rests on a certificate's validity at
// the time of verification stops holding (the earliest such certificate's
// expiry); zero when it rests on verified signing times only. Such a
// verdict is kept in memory until then and never persisted, so that it
// never serves offline.
func validUntil(v cache.Verdict) time.Time {
	var t time.Time
	for _, s := range v.SatisfiedBy {
		if !s.ValidUntil.IsZero() && (t.IsZero() || s.ValidUntil.Before(t)) {
			t = s.ValidUntil
		}
	}
	return t
}

// lapsed reports whether v rests on a certificate that has expired since.
func (e *Engine) lapsed(v cache.Verdict) bool {
	t := validUntil(v)
	return !t.IsZero() && !e.now().Before(t)
}

// Refuse is the decision on req when it cannot be made (the caller's
// deadline passed, the runtime's image store has no digest for it): a
// denial for reason under the mode of the rule req matches. Matching needs
// no I/O, so the rule's mode is known on every path, and it is applied here
// as for every other decision, never by the caller.
func (e *Engine) Refuse(req Request, reason string) Decision {
	d, _, rule, _ := e.match(req)
	return e.finish(d, rule, false, reason)
}

// match parses req and finds its rule. problem says why req cannot be
// decided on signatures (no digest, a digest that disagrees); the rule is
// still the one the image's name matches, so that its mode applies. The
// rule is nil when none matches or the reference does not parse.
func (e *Engine) match(req Request) (d Decision, img policy.Image, rule *policy.Rule, problem string) {
	d = Decision{Image: req.Image, Digest: req.Digest, Mode: string(e.policy.Mode), Rule: DefaultRuleName, Source: SourcePolicy}
	img, err := e.refs.parse(req.Image)
	if err != nil {
		return d, img, nil, fmt.Sprintf("image reference %q: %v", req.Image, err)
	}
	switch {
	case req.Digest == "" && img.Digest == "":
		problem = "the runtime gave no image digest and the reference has none; a name alone is never trusted"
	case req.Digest == "":
		d.Digest = img.Digest
	case img.Digest != "" && img.Digest != req.Digest:
		problem = fmt.Sprintf("reference digest %s differs from the runtime's digest %s", img.Digest, req.Digest)
	}
	img.Digest = d.Digest
	if d.Digest != "" {
		d.img = img // Ref builds "repository[:tag]@digest" from it when asked
	}
	rule = e.policy.Match(img, req.Namespace)
	if rule != nil {
		d.Rule, d.Mode = rule.Name, string(rule.Mode)
	}
	return d, img, rule, problem
}

// fromVerdict fills d from a verdict and applies the rule's mode.
func (e *Engine) fromVerdict(d Decision, rule *policy.Rule, v cache.Verdict) Decision {
	d.VerifiedAt = v.VerifiedAt
	if v.Allowed {
		d.SatisfiedBy = v.SatisfiedBy
	}
	return e.finish(d, rule, v.Allowed, v.Reasons...)
}

// finish sets the verdict, applying warn and audit modes.
func (e *Engine) finish(d Decision, rule *policy.Rule, allowed bool, reasons ...string) Decision {
	// Shared with the verdict or the policy's reasons, never written in
	// place: the full slice expression makes an append copy.
	d.Reasons = reasons[:len(reasons):len(reasons)]
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
