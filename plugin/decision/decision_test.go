package decision_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/check"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
	"github.com/sealgate/sealgate/plugin/verdict"
)

// fakeSource serves signatures and manifests from maps. It stands in for the
// registry in these unit tests only; plugin/ tests use a real registry and
// signatures made by the real cosign.
type fakeSource struct {
	sigs      map[string][]artifact.Signature
	manifests map[string]artifact.Manifest
	err       error
	// bundlesErr fails only the bundle (referrers) fetch.
	bundlesErr  error
	calls       int
	bundleCalls int
}

var _ source.Source = (*fakeSource)(nil)

func (f *fakeSource) Signatures(_ context.Context, img name.Digest) ([]artifact.Signature, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return f.sigs[img.DigestStr()], nil
}

func (f *fakeSource) Attestations(context.Context, name.Digest) ([]artifact.Attestation, error) {
	return nil, f.err
}

func (f *fakeSource) Bundles(context.Context, name.Digest) ([]artifact.Bundle, error) {
	f.bundleCalls++
	if f.bundlesErr != nil {
		return nil, f.bundlesErr
	}
	return nil, f.err
}

func (f *fakeSource) Describe(_ context.Context, img name.Digest) (artifact.Manifest, error) {
	if f.err != nil {
		return artifact.Manifest{}, f.err
	}
	m, ok := f.manifests[img.DigestStr()]
	if !ok {
		return artifact.Manifest{Digest: img.DigestStr(), MediaType: "application/vnd.oci.image.manifest.v1+json"}, nil
	}
	return m, nil
}

// newEngine builds an engine over a real checker of src, the fake source,
// so that these tests see what the engine does with what the checker
// finds. Options are the engine's, or withPlatform for the checker's.
func newEngine(p *policy.Policy, src source.Source, opts ...any) (*decision.Engine, error) {
	var (
		copts []check.Option
		dopts []decision.Option
	)
	for _, o := range opts {
		switch o := o.(type) {
		case check.Option:
			copts = append(copts, o)
		case decision.Option:
			dopts = append(dopts, o)
		default:
			return nil, fmt.Errorf("option of type %T", o)
		}
	}
	if src == nil {
		return nil, fmt.Errorf("nil source")
	}
	c, err := check.New(p, src, copts...)
	if err != nil {
		return nil, err
	}
	return decision.New(p, c, dopts...)
}

func withPlatform(p string) check.Option { return check.WithPlatform(p) }

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

const repo = "registry.example.com/team/app"

type env struct {
	signer signature.Signer
	dir    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), pem, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &env{signer: s, dir: dir}
}

// sign makes a cosign simple-signing signature over digest.
func (e *env) sign(t *testing.T, digest string) artifact.Signature {
	t.Helper()
	payload := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, repo, digest)
	sig, err := e.signer.SignMessage(strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	return artifact.Signature{Payload: []byte(payload), Signature: sig, Attached: digest, Origin: "test"}
}

func (e *env) policy(t *testing.T, mode, extra string) *policy.Policy {
	t.Helper()
	text := fmt.Sprintf(`mode: %s
default: deny
rules:
  - name: open
    images: ["registry.example.com/open/**"]
    action: allow
  - name: closed
    images: ["registry.example.com/closed/**"]
    action: deny
  - name: app
    images: ["registry.example.com/team/**"]
    signatures:
      authorities: [{key: release.pub}]
%s`, mode, extra)
	p := filepath.Join(e.dir, "policy.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func TestDecide(t *testing.T) {
	e := newEnv(t)
	signed, unsigned, index, child := digestOf("signed"), digestOf("unsigned"), digestOf("index"), digestOf("child")
	src := &fakeSource{
		sigs: map[string][]artifact.Signature{signed: {e.sign(t, signed)}, child: {e.sign(t, child)}},
		manifests: map[string]artifact.Manifest{index: {Digest: index, MediaType: "application/vnd.oci.image.index.v1+json",
			Children: []artifact.Child{artifact.NewChild(child, "linux/amd64")}}},
	}
	tests := []struct {
		name      string
		mode      string
		req       decision.Request
		allowed   bool
		wouldDeny bool
		rule      string
		source    string
		reason    string
	}{
		{"signed", "enforce", decision.Request{Image: repo + ":v1", Digest: signed}, true, false, "app", decision.SourceVerified, "verified by key release.pub"},
		{"digest in reference only", "enforce", decision.Request{Image: repo + "@" + signed}, true, false, "app", decision.SourceVerified, ""},
		{"unsigned", "enforce", decision.Request{Image: repo + ":v1", Digest: unsigned}, false, false, "app", decision.SourceVerified, "no signatures found"},
		{"no digest anywhere", "enforce", decision.Request{Image: repo + ":v1"}, false, false, "app", decision.SourcePolicy, "a name alone is never trusted"},
		{"reference digest differs", "enforce", decision.Request{Image: repo + "@" + signed, Digest: unsigned}, false, false, "app", decision.SourcePolicy, "differs from the runtime's digest"},
		{"bad reference", "enforce", decision.Request{Image: "UPPER/Case::", Digest: signed}, false, false, decision.DefaultRuleName, decision.SourcePolicy, "image reference"},
		{"no rule, default deny", "enforce", decision.Request{Image: "docker.io/library/nginx:1", Digest: signed}, false, false, decision.DefaultRuleName, decision.SourcePolicy, "no rule matches"},
		{"allow rule", "enforce", decision.Request{Image: "registry.example.com/open/x:1", Digest: unsigned}, true, false, "open", decision.SourcePolicy, "without signature verification"},
		{"deny rule", "enforce", decision.Request{Image: "registry.example.com/closed/x:1", Digest: signed}, false, false, "closed", decision.SourcePolicy, "the rule denies"},
		{"index with only its child signed", "enforce", decision.Request{Image: repo + ":v1", Digest: index}, false, false, "app", decision.SourceVerified, "only its linux/amd64 manifest"},
		{"warn mode allows unsigned", "warn", decision.Request{Image: repo + ":v1", Digest: unsigned}, true, true, "app", decision.SourceVerified, "no signatures found"},
		{"audit mode allows deny rule", "audit", decision.Request{Image: "registry.example.com/closed/x:1", Digest: signed}, true, true, "closed", decision.SourcePolicy, "the rule denies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng, err := newEngine(e.policy(t, tt.mode, ""), src, withPlatform("linux/amd64"))
			if err != nil {
				t.Fatal(err)
			}
			d := eng.Decide(context.Background(), tt.req)
			if d.Allowed != tt.allowed || d.WouldDeny != tt.wouldDeny || d.Rule != tt.rule || d.Source != tt.source || d.Mode != tt.mode {
				t.Fatalf("got allowed=%v wouldDeny=%v rule=%q source=%q mode=%q reasons=%q\nwant allowed=%v wouldDeny=%v rule=%q source=%q mode=%q",
					d.Allowed, d.WouldDeny, d.Rule, d.Source, d.Mode, d.Reasons, tt.allowed, tt.wouldDeny, tt.rule, tt.source, tt.mode)
			}
			if !strings.Contains(strings.Join(d.Reasons, "; "), tt.reason) {
				t.Errorf("reasons %q, want %q", d.Reasons, tt.reason)
			}
			if err := d.Err(); (err == nil) != d.Allowed {
				t.Errorf("Err() = %v with Allowed = %v", err, d.Allowed)
			} else if err != nil && !strings.HasPrefix(err.Error(), "sealgate: denied ") {
				t.Errorf("Err() = %q", err)
			}
		})
	}
}

func TestDecideAcceptPlatformSignature(t *testing.T) {
	e := newEnv(t)
	index, child := digestOf("index"), digestOf("child")
	src := &fakeSource{
		sigs: map[string][]artifact.Signature{child: {e.sign(t, child)}},
		manifests: map[string]artifact.Manifest{index: {Digest: index, MediaType: "application/vnd.oci.image.index.v1+json",
			Children: []artifact.Child{artifact.NewChild(digestOf("arm"), "linux/arm64"), artifact.NewChild(child, "linux/amd64")}}},
	}
	pol := e.policy(t, "enforce", "")
	pol.Rules[2].Signatures.AcceptPlatformSignature = true
	for platform, allowed := range map[string]bool{"linux/amd64": true, "linux/arm64": false, "linux/s390x": false} {
		eng, err := newEngine(pol, src, withPlatform(platform))
		if err != nil {
			t.Fatal(err)
		}
		d := eng.Decide(context.Background(), decision.Request{Image: repo + ":v1", Digest: index})
		if d.Allowed != allowed {
			t.Errorf("%s: allowed = %v, want %v (%q)", platform, d.Allowed, allowed, d.Reasons)
		}
	}
}

func TestDecideCachesOnlyVerifiedAllows(t *testing.T) {
	e := newEnv(t)
	signed, unsigned := digestOf("signed"), digestOf("unsigned")
	src := &fakeSource{sigs: map[string][]artifact.Signature{signed: {e.sign(t, signed)}}}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	eng, err := newEngine(e.policy(t, "enforce", ""), src, decision.WithClock(func() time.Time { return at }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := eng.Decide(ctx, decision.Request{Image: repo + ":v1", Digest: signed})
	second := eng.Decide(ctx, decision.Request{Image: repo + ":v2", Digest: signed})
	if first.Source != decision.SourceVerified || second.Source != decision.SourceCache || !second.Allowed {
		t.Fatalf("sources %s, %s; second %+v", first.Source, second.Source, second)
	}
	if second.VerifiedAt.IsZero() || !second.VerifiedAt.Equal(at) {
		t.Errorf("cached VerifiedAt = %v, want %v", second.VerifiedAt, at)
	}
	if src.calls != 1 {
		t.Errorf("source called %d times, want 1", src.calls)
	}
	// Without denial memory a denial is not cached: signing the image
	// later takes effect at once.
	eng, err = newEngine(e.policy(t, "enforce", ""), src, decision.WithClock(func() time.Time { return at }), decision.WithDenialMemory(0))
	if err != nil {
		t.Fatal(err)
	}
	eng.Decide(ctx, decision.Request{Image: repo + ":v1", Digest: unsigned})
	src.sigs[unsigned] = []artifact.Signature{e.sign(t, unsigned)}
	if d := eng.Decide(ctx, decision.Request{Image: repo + ":v1", Digest: unsigned}); !d.Allowed {
		t.Errorf("image signed after a denial still denied: %q", d.Reasons)
	}
}

// TestDenialMemory: a denial from verification decides again, within the
// window, without asking the sources, and not after it; a denial because
// the sources were unreachable is never remembered; a new engine (a
// re-seal builds one) asks again.
func TestDenialMemory(t *testing.T) {
	e := newEnv(t)
	unsigned := digestOf("unsigned")
	req := decision.Request{Image: repo + ":v1", Digest: unsigned}
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	pol := e.policy(t, "enforce", "")
	src := &fakeSource{}
	eng, err := newEngine(pol, src, decision.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if d := eng.Decide(ctx, req); d.Allowed || d.Source != decision.SourceVerified || src.calls != 1 {
		t.Fatalf("first: %+v, %d calls", d, src.calls)
	}
	now = now.Add(decision.DefaultDenialMemory - time.Second)
	d := eng.Decide(ctx, req)
	if d.Allowed || d.Source != decision.SourceCache || src.calls != 1 || !strings.Contains(d.Reasons[0], "denied again without asking the sources") {
		t.Fatalf("within the window: %+v, %d calls", d, src.calls)
	}
	if _, ok := eng.Quick(req); !ok {
		t.Error("Quick does not decide a remembered denial")
	}
	now = now.Add(2 * time.Second)
	if d := eng.Decide(ctx, req); d.Source != decision.SourceVerified || src.calls != 2 {
		t.Fatalf("after the window: %+v, %d calls", d, src.calls)
	}
	// A re-seal builds a new engine: it asks again at once.
	eng2, err := newEngine(pol, src, decision.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if d := eng2.Decide(ctx, req); d.Source != decision.SourceVerified || src.calls != 3 {
		t.Fatalf("new engine: %+v, %d calls", d, src.calls)
	}
	// Unreachable: not remembered.
	down := &fakeSource{err: fmt.Errorf("down: %w", source.ErrUnreachable)}
	eng3, err := newEngine(pol, down, decision.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	eng3.Decide(ctx, req)
	eng3.Decide(ctx, req)
	if down.calls != 2 {
		t.Errorf("an unreachable denial was remembered: %d calls, want 2", down.calls)
	}
	if _, err := newEngine(pol, src, decision.WithDenialMemory(-time.Second)); err == nil {
		t.Error("a negative denial memory was accepted")
	}
}

func TestDecideSourceErrors(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		err    error
		reason string
	}{
		{"unreachable", fmt.Errorf("fetch: %w", source.ErrUnreachable), "registry was unreachable"},
		{"limit", fmt.Errorf("fetch: %w", source.ErrLimit), "fetch signatures"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng, err := newEngine(e.policy(t, "enforce", ""), &fakeSource{err: tt.err})
			if err != nil {
				t.Fatal(err)
			}
			d := eng.Decide(context.Background(), decision.Request{Image: repo + ":v1", Digest: digestOf("x")})
			if d.Allowed || !strings.Contains(strings.Join(d.Reasons, ";"), tt.reason) {
				t.Fatalf("got %+v, want denial with %q", d, tt.reason)
			}
			if d.Source != decision.SourcePolicy {
				t.Errorf("source = %s, want %s for an operational failure", d.Source, decision.SourcePolicy)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	e := newEnv(t)
	pol := e.policy(t, "enforce", "")
	src := &fakeSource{}
	for name, f := range map[string]func() (*decision.Engine, error){
		"nil policy":   func() (*decision.Engine, error) { return newEngine(nil, src) },
		"nil checker":  func() (*decision.Engine, error) { return decision.New(pol, nil) },
		"nil cache":    func() (*decision.Engine, error) { return newEngine(pol, src, decision.WithCache(nil)) },
		"bad platform": func() (*decision.Engine, error) { return newEngine(pol, src, withPlatform("linux")) },
	} {
		if _, err := f(); err == nil {
			t.Errorf("%s: decision.New succeeded", name)
		}
	}
}

// clock is a settable wall clock and monotonic (TPM) clock.
type clock struct {
	wall time.Time
	mono time.Duration
}

func (c *clock) now() time.Time           { return c.wall }
func (c *clock) monotonic() time.Duration { return c.mono }

func TestDecideOffline(t *testing.T) {
	e := newEnv(t)
	signed := digestOf("signed")
	req := decision.Request{Image: repo + ":v1", Digest: signed}
	unreachable := fmt.Errorf("dial tcp 127.0.0.1:5000: connect: connection refused: %w", source.ErrUnreachable)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	tests := []struct {
		name     string
		maxAge   string
		advance  time.Duration // wall clock
		mono     time.Duration // monotonic clock
		registry string        // "down", "unsigned" (up, no signature)
		allowed  bool
		source   string
		reason   string
	}{
		{"young verdict serves offline", "1h", 10 * time.Minute, 10 * time.Minute, "down", true, decision.SourceOfflineCache, "serves offline"},
		{"old verdict does not", "1h", 2 * time.Hour, 2 * time.Hour, "down", false, decision.SourcePolicy, "unreachable and no valid cached verdict"},
		{"wall clock set back: the monotonic clock still ages it", "1h", 10 * time.Minute, 3 * time.Hour, "down", false, decision.SourcePolicy, "no valid cached verdict"},
		{"no offline age: never serves offline", "0s", time.Minute, time.Minute, "down", false, decision.SourcePolicy, "no valid cached verdict"},
		{"TPM clock went back behind the verdict: its age is unknown", "1h", 10 * time.Minute, -50 * time.Minute, "down", false, decision.SourcePolicy, "no valid cached verdict"},
		{"a fetched, failing signature is never overridden", "1h", 10 * time.Minute, 10 * time.Minute, "unsigned", false, decision.SourceVerified, "no signatures found"},
		{"a fetched, failing signature beside unreachable referrers is never overridden", "1h", 10 * time.Minute, 10 * time.Minute, "tampered, referrers down", false, decision.SourceVerified, "also: "},
		{"signature gone, referrers down: the registry answered, not offline", "1h", 10 * time.Minute, 10 * time.Minute, "no sig, referrers down", false, decision.SourcePolicy, "answered in part"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeSource{sigs: map[string][]artifact.Signature{signed: {e.sign(t, signed)}}}
			pol := e.policy(t, "enforce", "")
			pol.Offline.MaxVerdictAge, _ = time.ParseDuration(tt.maxAge)
			c := &clock{wall: start, mono: time.Hour}
			offline := cache.NewMemory(0)
			eng, err := newEngine(pol, src, decision.WithClock(c.now), decision.WithMonotonicClock(c.monotonic), decision.WithOfflineStore(offline), decision.WithRevalidateAfter(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if d := eng.Decide(context.Background(), req); !d.Allowed || d.Source != decision.SourceVerified {
				t.Fatalf("first decision %+v", d)
			}
			if offline.Len() != 1 {
				t.Fatalf("verified verdict not written to the offline store")
			}
			c.wall, c.mono = start.Add(tt.advance), time.Hour+tt.mono
			switch tt.registry {
			case "down":
				src.err = unreachable
			case "unsigned":
				delete(src.sigs, signed)
			case "tampered, referrers down":
				// A signature whose payload names another image.
				src.sigs[signed] = []artifact.Signature{e.sign(t, digestOf("another image"))}
				src.bundlesErr = unreachable
			case "no sig, referrers down":
				delete(src.sigs, signed)
				src.bundlesErr = unreachable
			}
			d := eng.Decide(context.Background(), req)
			if d.Allowed != tt.allowed || d.Source != tt.source || !strings.Contains(strings.Join(d.Reasons, "; "), tt.reason) {
				t.Fatalf("got allowed=%v source=%s reasons=%q; want allowed=%v source=%s reason %q", d.Allowed, d.Source, d.Reasons, tt.allowed, tt.source, tt.reason)
			}
		})
	}
}

// After a restart only the offline store holds the verdict: it decides
// while the registry is down, and only then.
func TestDecideOfflineAfterRestart(t *testing.T) {
	e := newEnv(t)
	signed, other := digestOf("signed"), digestOf("other")
	src := &fakeSource{sigs: map[string][]artifact.Signature{signed: {e.sign(t, signed)}}}
	pol := e.policy(t, "enforce", "")
	pol.Offline.MaxVerdictAge = time.Hour
	offline := cache.NewMemory(0)
	first, err := newEngine(pol, src, decision.WithOfflineStore(offline))
	if err != nil {
		t.Fatal(err)
	}
	first.Decide(context.Background(), decision.Request{Image: repo + ":v1", Digest: signed})

	src.err = fmt.Errorf("no route to host: %w", source.ErrUnreachable)
	restarted, err := newEngine(pol, src, decision.WithOfflineStore(offline))
	if err != nil {
		t.Fatal(err)
	}
	if d := restarted.Decide(context.Background(), decision.Request{Image: repo + ":v1", Digest: signed}); !d.Allowed || d.Source != decision.SourceOfflineCache {
		t.Errorf("verified image after restart: %+v", d)
	}
	if d := restarted.Decide(context.Background(), decision.Request{Image: repo + ":v1", Digest: other}); d.Allowed {
		t.Errorf("never-verified image allowed offline: %+v", d)
	}
}

// TestRegressionRuleModeOnEveryPath: the matched rule's mode, not the
// policy's, decides on every path that cannot verify: the caller's deadline
// (Refuse), a resolver error (Refuse), a missing digest. An enforce rule
// under a warn policy denies; a warn rule under an enforce policy allows
// and says what enforce would have done.
func TestRegressionRuleModeOnEveryPath(t *testing.T) {
	e := newEnv(t)
	ruleMode := func(policyMode, rm string) *decision.Engine {
		t.Helper()
		text := fmt.Sprintf("mode: %s\ndefault: deny\nrules:\n  - name: app\n    mode: %s\n    images: [\"registry.example.com/team/**\"]\n    signatures:\n      authorities: [{key: release.pub}]\n", policyMode, rm)
		p := filepath.Join(e.dir, "mode.yaml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		pol, err := policy.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		eng, err := newEngine(pol, &fakeSource{})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}
	paths := map[string]func(*decision.Engine) decision.Decision{
		"deadline": func(eng *decision.Engine) decision.Decision {
			return eng.Refuse(decision.Request{Image: repo + ":v1", Digest: digestOf("x")}, "no decision within the deadline")
		},
		"resolver error": func(eng *decision.Engine) decision.Decision {
			return eng.Refuse(decision.Request{Image: repo + ":v1"}, "the runtime's image store has none")
		},
		"missing digest": func(eng *decision.Engine) decision.Decision {
			return eng.Decide(context.Background(), decision.Request{Image: repo + ":v1"})
		},
	}
	for name, path := range paths {
		t.Run(name+"/enforce rule under warn policy", func(t *testing.T) {
			d := path(ruleMode("warn", "enforce"))
			if d.Allowed || d.Rule != "app" || d.Mode != "enforce" {
				t.Errorf("got allowed=%v rule=%q mode=%q; want denied by rule app in enforce mode", d.Allowed, d.Rule, d.Mode)
			}
		})
		t.Run(name+"/warn rule under enforce policy", func(t *testing.T) {
			d := path(ruleMode("enforce", "warn"))
			if !d.Allowed || !d.WouldDeny || d.Rule != "app" || d.Mode != "warn" {
				t.Errorf("got allowed=%v wouldDeny=%v rule=%q mode=%q; want allowed by rule app's warn mode", d.Allowed, d.WouldDeny, d.Rule, d.Mode)
			}
		})
	}
}

// TestRegressionClockWentBack: when start-up found the TPM's clock behind
// the highest value seen (or unsafe), no verdict serves offline, however
// young it looks; online decisions are unchanged.
func TestRegressionClockWentBack(t *testing.T) {
	e := newEnv(t)
	signed := digestOf("signed")
	src := &fakeSource{sigs: map[string][]artifact.Signature{signed: {e.sign(t, signed)}}}
	pol := e.policy(t, "enforce", "")
	pol.Offline.MaxVerdictAge = time.Hour
	offline := cache.NewMemory(0)
	first, err := newEngine(pol, src, decision.WithOfflineStore(offline))
	if err != nil {
		t.Fatal(err)
	}
	if d := first.Decide(context.Background(), decision.Request{Image: repo + ":v1", Digest: signed}); !d.Allowed {
		t.Fatalf("online: %+v", d)
	}
	src.err = fmt.Errorf("no route to host: %w", source.ErrUnreachable)
	restarted, err := newEngine(pol, src, decision.WithOfflineStore(offline), decision.WithOfflineUnavailable("the TPM clock (1m9s) is behind the highest value seen (7m13s)"))
	if err != nil {
		t.Fatal(err)
	}
	d := restarted.Decide(context.Background(), decision.Request{Image: repo + ":v1", Digest: signed})
	if d.Allowed || !strings.Contains(strings.Join(d.Reasons, "; "), "offline verdicts are off: the TPM clock") {
		t.Errorf("offline with an untrusted clock: %+v; want a denial saying why", d)
	}
	src.err = nil
	if d := restarted.Decide(context.Background(), decision.Request{Image: repo + ":v1", Digest: signed}); !d.Allowed {
		t.Errorf("online with an untrusted clock: %+v; want allowed", d)
	}
}

// TestMatchExactVerdictPerReference: under signedIdentity matchExact a
// signature for app:v1 allows app:v1 and not app:v2 of the same digest,
// and the cached verdict of one is never served for the other.
func TestMatchExactVerdictPerReference(t *testing.T) {
	e := newEnv(t)
	digest := "sha256:" + strings.Repeat("c", 64)
	payload := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, repo+":v1", digest)
	sig, err := e.signer.SignMessage(strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{sigs: map[string][]artifact.Signature{digest: {{Payload: []byte(payload), Signature: sig, Attached: digest}}}}
	text := "mode: enforce\ndefault: deny\nrules:\n  - name: app\n    images: [\"registry.example.com/team/**\"]\n    signatures:\n      signedIdentity: matchExact\n      authorities: [{key: release.pub}]\n"
	p := filepath.Join(e.dir, "exact.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := newEngine(pol, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		image string
		ok    bool
	}{{repo + ":v1", true}, {repo + ":v2", false}, {repo + ":v1", true}, {repo + ":v2", false}} {
		d := eng.Decide(context.Background(), decision.Request{Image: tc.image, Digest: digest})
		if d.Allowed != tc.ok {
			t.Errorf("%s: allowed %v (source %s, %q), want %v", tc.image, d.Allowed, d.Source, d.Reasons, tc.ok)
		}
	}
}

// TestClockBoundVerdict: a verdict that rests on a certificate's validity
// at verification time (a satisfier with ValidUntil) decides from memory
// only until the certificate expires, and never while the sources are
// unreachable.
func TestClockBoundVerdict(t *testing.T) {
	e := newEnv(t)
	signed := digestOf("signed")
	req := decision.Request{Image: repo + ":v1", Digest: signed}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		advance time.Duration
		allowed bool
		source  string
	}{
		{"before expiry: from memory", 10 * time.Minute, true, decision.SourceCache},
		{"after expiry: verified again, and offline refused", 2 * time.Hour, false, decision.SourcePolicy},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pol := e.policy(t, "enforce", "offline: {maxVerdictAge: 24h}")
			mem := cache.NewMemory(0)
			key := cache.Key{Digest: signed, Repository: repo, Rule: "app", PolicyDigest: pol.Digest}
			mem.Put(key, cache.Verdict{Allowed: true, VerifiedAt: start, SatisfiedBy: []verdict.Satisfier{{Authority: "certificate ca.pem s", ValidUntil: start.Add(time.Hour)}}})
			src := &fakeSource{err: fmt.Errorf("down: %w", source.ErrUnreachable)}
			now := start.Add(tt.advance)
			eng, err := newEngine(pol, src, decision.WithCache(mem), decision.WithClock(func() time.Time { return now }), decision.WithRevalidateAfter(3*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			d := eng.Decide(context.Background(), req)
			if d.Allowed != tt.allowed || d.Source != tt.source {
				t.Fatalf("allowed=%v source=%s (%q), want allowed=%v source=%s", d.Allowed, d.Source, d.Reasons, tt.allowed, tt.source)
			}
		})
	}
}

// TestSchemeOrder: the referrers are asked first; a repository whose
// image was satisfied by cosign's classic tags is asked those first next
// time, and the referrers only when they do not satisfy.
func TestSchemeOrder(t *testing.T) {
	e := newEnv(t)
	one, two, three := digestOf("one"), digestOf("two"), digestOf("three")
	src := &fakeSource{sigs: map[string][]artifact.Signature{one: {e.sign(t, one)}, two: {e.sign(t, two)}}}
	eng, err := newEngine(e.policy(t, "enforce", ""), src, decision.WithDenialMemory(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if d := eng.Decide(ctx, decision.Request{Image: repo + ":v1", Digest: one}); !d.Allowed || src.bundleCalls != 1 || src.calls != 1 {
		t.Fatalf("first image: %+v; %d bundle and %d signature fetches, want 1 and 1", d, src.bundleCalls, src.calls)
	}
	if d := eng.Decide(ctx, decision.Request{Image: repo + ":v2", Digest: two}); !d.Allowed || src.bundleCalls != 1 || src.calls != 2 {
		t.Fatalf("second image of the repository: %+v; %d bundle and %d signature fetches, want the classic tags only", d, src.bundleCalls, src.calls)
	}
	// Unsigned: both asked, the classic tags first.
	if d := eng.Decide(ctx, decision.Request{Image: repo + ":v3", Digest: three}); d.Allowed || src.bundleCalls != 2 || src.calls != 3 {
		t.Fatalf("unsigned image: %+v; %d bundle and %d signature fetches", d, src.bundleCalls, src.calls)
	}
}

// TestCacheCounts: a decision asked first of Quick and then of Decide is
// one miss; the next, from the cache, one hit.
func TestCacheCounts(t *testing.T) {
	e := newEnv(t)
	signed := digestOf("signed")
	src := &fakeSource{sigs: map[string][]artifact.Signature{signed: {e.sign(t, signed)}}}
	eng, err := newEngine(e.policy(t, "enforce", ""), src)
	if err != nil {
		t.Fatal(err)
	}
	req := decision.Request{Image: repo + ":v1", Digest: signed}
	if _, ok := eng.Quick(req); ok {
		t.Fatal("Quick decided an image never verified")
	}
	eng.Decide(context.Background(), req)
	if _, ok := eng.Quick(req); !ok {
		t.Fatal("Quick did not decide from the cache")
	}
	if h, m := eng.CacheCounts(); h != 1 || m != 1 {
		t.Errorf("hits %d, misses %d; want 1 and 1", h, m)
	}
}
