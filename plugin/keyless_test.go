package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
	"github.com/sealgate/sealgate/plugin/verify"
)

// keylessCase is one keyless signature on one image, or one authority
// asking for another identity than the signature's: each either allowed
// or denied with a reason no other case gives.
type keylessCase struct {
	// name is the image's repository ("<form>/<name>") and the rule's name.
	name string
	// leaf alters the signing certificate (default: testenv's GitHub
	// Actions release identity).
	leaf func(f *keylessFixture, o *testenv.LeafOptions)
	// mutations alter the signature before it is pushed.
	mutations []testenv.Mutation
	// authority is the rule's keyless authority (default: rightAuthority).
	authority string
	// want is a fragment of the denial only this case produces; "" means
	// allowed.
	want string
}

// rightAuthority is the identity the fixture's signatures have, matched
// as an operator would: the issuer exactly, the workflow by a regular
// expression, the repository by the Fulcio extension.
const rightAuthority = `
            issuer: https://token.actions.githubusercontent.com
            subjectRegExp: '^https://github\.com/myorg/app/\.github/workflows/release\.yml@refs/tags/v.+$'
            sourceRepositoryURI: https://github.com/myorg/app`

var keylessCases = []keylessCase{
	{name: "right"},
	{name: "wrong-subject", authority: `
            issuer: https://token.actions.githubusercontent.com
            subject: https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0.0`,
		want: `expected SAN value "https://github.com/evil/`},
	{name: "wrong-issuer", authority: `
            issuer: https://accounts.google.com
            subject: https://github.com/myorg/app/.github/workflows/release.yml@refs/tags/v1.0.0`,
		want: `expected issuer value "https://accounts.google.com"`},
	{name: "regexp-not-matching", authority: `
            issuer: https://token.actions.githubusercontent.com
            subjectRegExp: '^https://github\.com/myorg/other/.+$'`,
		want: `expected SAN value to match regex "^https://github\.com/myorg/other/.+$"`},
	{name: "source-repository-mismatch", authority: `
            issuer: https://token.actions.githubusercontent.com
            subjectRegExp: '^https://github\.com/myorg/app/\.github/workflows/release\.yml@refs/tags/v.+$'
            sourceRepositoryURI: https://github.com/myorg/other`,
		want: `certificate source repository URI "https://github.com/myorg/app" does not match https://github.com/myorg/other`},
	{name: "ca-not-in-root", leaf: func(f *keylessFixture, o *testenv.LeafOptions) { o.CA = f.otherCA },
		want: "does not chain to a Fulcio CA of the trusted root"},
	{name: "expired-at-signing", leaf: func(f *keylessFixture, o *testenv.LeafOptions) {
		o.NotBefore, o.NotAfter = f.sigstore.Now.Add(-30*time.Minute), f.sigstore.Now.Add(-20*time.Minute)
	}, want: "the certificate was not valid at the signing time recorded by the log"},
	{name: "missing-rekor-entry", mutations: []testenv.Mutation{testenv.WithoutRekorEntry()},
		want: "no transparency-log entry, and the authority requires one"},
	{name: "altered-rekor-entry", mutations: []testenv.Mutation{testenv.AlterRekorEntry()},
		want: "no transparency-log entry verifies against the Rekor keys of the trust store"},
	{name: "rekor-entry-of-another-signature", mutations: []testenv.Mutation{testenv.RekorEntryOfAnotherSignature()},
		want: "the transparency-log entry is about another signature"},
	{name: "missing-sct", leaf: func(_ *keylessFixture, o *testenv.LeafOptions) { o.NoSCT = true },
		want: "the certificate has no valid SCT from a CT log of the trusted root"},
}

// The two ways a keyless signature is attached, and the two kinds of
// registry it is fetched from.
var (
	keylessForms    = []string{"classic", "bundle"}
	registryKinds   = []string{"referrers", "tags"}
	registryOptions = map[string]testenv.RegistryOptions{"referrers": {Referrers: true}, "tags": {Referrers: false}}
)

// keylessFixture is an offline Sigstore and two registries on 127.0.0.1,
// one with the OCI 1.1 referrers API and one without (where bundles are
// found through cosign's sha256-<hex> tag fallback), holding one image per
// registry, form and case, signed keylessly as cosign would: a classic
// .sig layer with certificate, chain and Rekor bundle annotations, or a
// Sigstore bundle referrer.
type keylessFixture struct {
	sigstore *testenv.Sigstore
	otherCA  *testenv.CA // a Fulcio-like CA the trusted root does not list
	regs     map[string]*testenv.Registry
	dir      string
	digests  map[string]name.Digest // "<registry kind>/<form>/<case>"
}

var (
	keylessOnce sync.Once
	keylessFix  *keylessFixture
	keylessErr  error
)

// loadKeylessFixture builds the shared fixture once per test binary; it
// needs no external tool, and takes well under a second.
func loadKeylessFixture(t testing.TB) *keylessFixture {
	t.Helper()
	keylessOnce.Do(func() { keylessFix, keylessErr = buildKeylessFixture() })
	if keylessErr != nil {
		t.Fatalf("build keyless fixture: %v", keylessErr)
	}
	return keylessFix
}

func buildKeylessFixture() (*keylessFixture, error) {
	dir, err := os.MkdirTemp("", "sealgate-keyless-test-")
	if err != nil {
		return nil, err
	}
	f := &keylessFixture{regs: map[string]*testenv.Registry{}, dir: dir, digests: map[string]name.Digest{}}
	if f.sigstore, err = testenv.StartSigstore(dir); err != nil {
		return nil, err
	}
	if f.otherCA, err = testenv.NewCA(); err != nil {
		return nil, err
	}
	seed := int64(1000)
	for _, kind := range registryKinds {
		reg, err := testenv.StartRegistry(registryOptions[kind])
		if err != nil {
			return nil, err
		}
		f.regs[kind] = reg
		for _, form := range keylessForms {
			for _, c := range keylessCases {
				seed++
				img, err := testenv.RandomImage(seed)
				if err != nil {
					return nil, err
				}
				d, err := reg.Push(img, form+"/"+c.name+":v1")
				if err != nil {
					return nil, err
				}
				f.digests[kind+"/"+form+"/"+c.name] = d
				if err := f.sign(d, form, c); err != nil {
					return nil, fmt.Errorf("%s %s %s: %w", kind, form, c.name, err)
				}
			}
		}
	}
	return f, nil
}

// sign signs d keylessly in form as case c says and pushes the signature.
func (f *keylessFixture) sign(d name.Digest, form string, c keylessCase) error {
	leaf := f.sigstore.DefaultLeaf()
	if c.leaf != nil {
		c.leaf(f, &leaf)
	}
	reg := f.regs[registryOf(f, d)]
	if form == "bundle" {
		b, err := f.sigstore.SignBundle(leaf, d.DigestStr(), c.mutations...)
		if err != nil {
			return err
		}
		_, err = reg.PushBundle(d, b)
		return err
	}
	payload, err := testenv.SimpleSigningPayload(d)
	if err != nil {
		return err
	}
	sig, err := f.sigstore.SignClassic(leaf, payload, c.mutations...)
	if err != nil {
		return err
	}
	_, err = reg.PushCosignSignatures(d, sig)
	return err
}

func registryOf(f *keylessFixture, d name.Digest) string {
	for kind, r := range f.regs {
		if r.Addr == d.RegistryStr() {
			return kind
		}
	}
	return ""
}

// writePolicy writes a policy with one rule per case, trusting the
// fixture's Sigstore root.
func (f *keylessFixture) writePolicy(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "mode: enforce\ndefault: deny\ntrustedRoot: %s\nrules:\n", f.sigstore.RootFile)
	for _, c := range keylessCases {
		var images []string
		for _, kind := range registryKinds {
			images = append(images, fmt.Sprintf("%q", f.regs[kind].Addr+"/*/"+c.name))
		}
		auth := c.authority
		if auth == "" {
			auth = rightAuthority
		}
		fmt.Fprintf(&b, "  - name: %s\n    images: [%s]\n    signatures:\n      authorities:\n        - keyless:%s\n", c.name, strings.Join(images, ", "), auth)
	}
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var digestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// normalize removes from a denial what differs between images anyway
// (registry, repository, digests), leaving the reason.
func (f *keylessFixture) normalize(err error, form, c string) string {
	s := err.Error()
	for _, r := range f.regs {
		s = strings.ReplaceAll(s, r.Addr, "REGISTRY")
	}
	s = strings.ReplaceAll(s, form+"/"+c, "REPOSITORY")
	s = strings.ReplaceAll(s, "(rule "+c+")", "(rule RULE)")
	return digestRE.ReplaceAllString(s, "DIGEST")
}

// TestKeylessThroughNRI decides, through NRI's real runtime side, on
// images signed keylessly with the offline Sigstore, in cosign's classic
// scheme and as bundle referrers, fetched from registries with and without
// the referrers API: the right identity is allowed, reported with its
// issuer, subject and signing time, and each way of getting the signature
// or the identity wrong is denied with its own reason.
func TestKeylessThroughNRI(t *testing.T) {
	f := loadKeylessFixture(t)
	for i, a := range keylessCases {
		for _, b := range keylessCases[i+1:] {
			if a.want != "" && b.want != "" && (strings.Contains(a.want, b.want) || strings.Contains(b.want, a.want)) {
				t.Fatalf("cases %s and %s expect overlapping reasons %q and %q", a.name, b.name, a.want, b.want)
			}
		}
	}
	n := startNode(t, f.writePolicy(t))
	for _, kind := range registryKinds {
		for _, form := range keylessForms {
			denials := map[string]string{} // case -> denial
			reasons := map[string]string{} // normalized denial -> case
			for _, c := range keylessCases {
				t.Run(kind+"/"+form+"/"+c.name, func(t *testing.T) {
					d := f.digests[kind+"/"+form+"/"+c.name]
					err := n.create(t, d, "v1")
					if c.want == "" {
						if err != nil {
							t.Fatalf("denied, want allowed: %v", err)
						}
						checkSatisfiedBy(t, f, n.engine, d, form)
						return
					}
					if err == nil {
						t.Fatal("allowed, want denied")
					}
					prefix := fmt.Sprintf("sealgate: denied %s:v1@%s (rule %s): ", d.Context().String(), d.DigestStr(), c.name)
					if !strings.Contains(err.Error(), prefix) {
						t.Errorf("error %q\nwant it to contain %q", err, prefix)
					}
					if !strings.Contains(err.Error(), c.want) {
						t.Errorf("error %q\nwant reason %q", err, c.want)
					}
					t.Logf("denial: %v", err)
					denials[c.name] = err.Error()
					r := f.normalize(err, form, c.name)
					if other, dup := reasons[r]; dup {
						t.Errorf("cases %s and %s are denied for the same reason: %s", other, c.name, r)
					}
					reasons[r] = c.name
				})
			}
			// Each reason is its case's own: no other denial contains it.
			for _, c := range keylessCases {
				for other, denial := range denials {
					if c.want != "" && other != c.name && strings.Contains(denial, c.want) {
						t.Errorf("%s/%s: the denial of %s contains the reason of %s (%q): %s", kind, form, other, c.name, c.want, denial)
					}
				}
			}
			if t.Failed() {
				continue
			}
			if want := len(keylessCases) - 1; len(reasons) != want {
				t.Errorf("%s/%s: %d distinct reasons, want %d", kind, form, len(reasons), want)
			}
		}
	}
	if strings.Contains(n.logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", n.logs.String())
	}
}

// checkSatisfiedBy checks what `sealgate verify --output json` would
// report for an allowed image: the certificate's issuer and subject, and
// the signing time the log recorded.
func checkSatisfiedBy(t *testing.T, f *keylessFixture, e *decision.Engine, d name.Digest, form string) {
	t.Helper()
	got := e.Decide(context.Background(), decision.Request{Image: d.Context().String() + ":v1", Digest: d.DigestStr(), Namespace: "default"})
	if !got.Allowed || len(got.SatisfiedBy) != 1 {
		t.Fatalf("decision %+v, want allowed by one authority", got)
	}
	by := got.SatisfiedBy[0]
	kind := verify.KindCosignSignature
	if form == "bundle" {
		kind = verify.KindBundle
	}
	signedAt := time.Unix(f.sigstore.Now.Unix(), 0)
	if by.Issuer != testenv.KeylessIssuer || by.Subject != testenv.KeylessSubject || !by.SignedAt.Equal(signedAt) ||
		by.Kind != kind || by.Digest != d.DigestStr() || by.KeyID != "" || by.Requirement != decision.RequirementSignatures {
		t.Errorf("satisfied by %+v\nwant issuer %s, subject %s, signed at %v, kind %s", by, testenv.KeylessIssuer, testenv.KeylessSubject, signedAt, kind)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"issuer":"` + testenv.KeylessIssuer + `"`, `"subject":"` + testenv.KeylessSubject + `"`, `"signedAt":"` + signedAt.UTC().Format(time.RFC3339)} {
		if !strings.Contains(string(b), want) {
			t.Errorf("decision JSON %s\nlacks %s", b, want)
		}
	}
}

// BenchmarkKeylessFirstDecision fetches a keyless signature from the
// registry on 127.0.0.1 and verifies it against the trusted root, every
// time (no verdict cache): classic .sig, and bundle referrers through the
// referrers API and through the tag fallback.
func BenchmarkKeylessFirstDecision(b *testing.B) {
	f := loadKeylessFixture(b)
	pol, err := policy.Load(f.writePolicy(b))
	if err != nil {
		b.Fatal(err)
	}
	src, err := source.NewRegistry(source.WithHostsDir(filepath.Join(b.TempDir(), "certs.d")))
	if err != nil {
		b.Fatal(err)
	}
	e := engineOver(b, pol, src, decision.WithCache(nopStore{}))
	for _, img := range []string{"referrers/classic/right", "referrers/bundle/right", "tags/bundle/right"} {
		b.Run(strings.ReplaceAll(img, "/right", ""), func(b *testing.B) {
			d := f.digests[img]
			req := decision.Request{Image: d.Context().String() + ":v1", Digest: d.DigestStr(), Namespace: "default"}
			lat := make(latencies, 0, 1<<12)
			for b.Loop() {
				start := time.Now()
				got := e.Decide(context.Background(), req)
				lat = append(lat, time.Since(start))
				if !got.Allowed || got.Source != decision.SourceVerified {
					b.Fatalf("got %+v", got)
				}
			}
			lat.report(b)
		})
	}
}
