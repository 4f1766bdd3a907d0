package verify

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

func keylessAuthority(mod func(*policy.KeylessAuthority)) *policy.Authority {
	k := &policy.KeylessAuthority{Issuer: testIssuer, Subject: testSubject}
	if mod != nil {
		mod(k)
	}
	return &policy.Authority{Name: "keyless release", Keyless: k}
}

// keylessCase is one keyless signature, made by testSigstore and possibly
// altered, checked in both the classic and the bundle form.
type keylessCase struct {
	name   string
	leaf   func(*leafOpts)
	auth   func(*policy.KeylessAuthority)
	tlog   policy.TransparencyLog
	tsa    bool
	noCT   bool // verify against the root without CT logs
	skip   bool // the authority says ctlog: skip
	mutate func(t *testing.T, p *keylessParts, other keylessParts)
	// want is a substring of the reason; "" means allowed.
	want string
	// wantTSA: allowed, with the TSA's time as the signing time.
	wantTSA bool
}

func keylessCases(t *testing.T, ts *testSigstore) []keylessCase {
	otherRoot, otherRootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	otherInter, otherInterKey, err := ca.GenerateFulcioIntermediate(otherRoot, otherRootKey)
	if err != nil {
		t.Fatal(err)
	}
	return []keylessCase{
		{name: "right identity"},
		{name: "right identity by regular expressions", auth: func(k *policy.KeylessAuthority) {
			k.Subject, k.SubjectRegExp = "", regexp.MustCompile(`^https://github\.com/myorg/.+@refs/tags/v.+$`)
			k.Issuer, k.IssuerRegExp = "", regexp.MustCompile(`^https://token\.actions\.githubusercontent\.com$`)
		}},
		{name: "right extensions", auth: func(k *policy.KeylessAuthority) {
			k.SourceRepositoryURI = policy.StringMatch{Exact: testRepoURI}
			k.SourceRepositoryRef = policy.StringMatch{RegExp: regexp.MustCompile(`^refs/tags/v`)}
			k.BuildSignerURI = policy.StringMatch{Exact: testSubject}
		}},
		{name: "email identity", leaf: func(o *leafOpts) { o.subject, o.issuer = "dev@example.com", "https://accounts.google.com" },
			auth: func(k *policy.KeylessAuthority) {
				k.Subject, k.Issuer = "dev@example.com", "https://accounts.google.com"
			}},
		{name: "transparency log optional, entry present", tlog: policy.TlogOptional},
		{name: "transparency log optional, TSA timestamp only", tlog: policy.TlogOptional, tsa: true,
			mutate: func(t *testing.T, p *keylessParts, _ keylessParts) { p.entry = nil }, wantTSA: true},
		{name: "no SCT, root without CT logs", noCT: true, leaf: func(o *leafOpts) { o.noSCT = true }},
		{name: "no SCT, the authority says ctlog: skip", skip: true, leaf: func(o *leafOpts) { o.noSCT = true }},

		{name: "wrong subject", auth: func(k *policy.KeylessAuthority) {
			k.Subject = "https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0.0"
		},
			want: `certificate identity: expected SAN value "https://github.com/evil/`},
		{name: "wrong issuer", auth: func(k *policy.KeylessAuthority) { k.Issuer = "https://accounts.google.com" },
			want: `certificate identity: expected issuer value "https://accounts.google.com"`},
		{name: "regular expression not matching", auth: func(k *policy.KeylessAuthority) {
			k.Subject, k.SubjectRegExp = "", regexp.MustCompile(`^https://github\.com/myorg/other/`)
		}, want: `expected SAN value to match regex "^https://github\.com/myorg/other/"`},
		{name: "source repository mismatch", auth: func(k *policy.KeylessAuthority) {
			k.SourceRepositoryURI = policy.StringMatch{Exact: "https://github.com/myorg/other"}
		},
			want: `certificate source repository URI "https://github.com/myorg/app" does not match https://github.com/myorg/other`},
		{name: "source ref mismatch", auth: func(k *policy.KeylessAuthority) {
			k.SourceRepositoryRef = policy.StringMatch{RegExp: regexp.MustCompile(`^refs/heads/main$`)}
		}, want: `certificate source repository ref "refs/tags/v1.0.0" does not match ~^refs/heads/main$`},
		{name: "build signer mismatch", auth: func(k *policy.KeylessAuthority) {
			k.BuildSignerURI = policy.StringMatch{Exact: "https://github.com/myorg/app/.github/workflows/other.yml@refs/tags/v1.0.0"}
		},
			want: `certificate build signer URI`},
		{name: "certificate from a CA not in the root", leaf: func(o *leafOpts) { o.issuerCert, o.issuerKey = otherInter, otherInterKey },
			want: "does not chain to a Fulcio CA of the trusted root"},
		{name: "certificate expired at the signing time", leaf: func(o *leafOpts) {
			o.notBefore, o.notAfter = ts.now.Add(-30*time.Minute), ts.now.Add(-20*time.Minute)
		}, want: "the certificate was not valid at the signing time recorded by the log"},
		{name: "missing Rekor entry", mutate: func(t *testing.T, p *keylessParts, _ keylessParts) { p.entry = nil },
			want: "no transparency-log entry, and the authority requires one"},
		{name: "altered Rekor entry", mutate: func(t *testing.T, p *keylessParts, _ keylessParts) {
			e := *p.entry
			e.integratedTime++ // the signed entry timestamp no longer covers it
			p.entry = &e
		}, want: "no transparency-log entry verifies against the Rekor keys of the trust store"},
		{name: "valid Rekor entry about another signature", mutate: func(t *testing.T, p *keylessParts, other keylessParts) { p.entry = other.entry },
			want: "the transparency-log entry is about another signature"},
		{name: "Rekor entry from a log not in the root", mutate: func(t *testing.T, p *keylessParts, _ keylessParts) {
			e := *p.entry
			e.logID = make([]byte, 32)
			p.entry = &e
		}, want: "from a log the trust store does not know"},
		{name: "missing SCT where the root has CT logs", leaf: func(o *leafOpts) { o.noSCT = true },
			want: "the certificate has no valid SCT from a CT log of the trusted root"},
		{name: "no time source with the log optional", tlog: policy.TlogOptional,
			mutate: func(t *testing.T, p *keylessParts, _ keylessParts) { p.entry = nil },
			want:   "no verified signing time: the signature has neither a transparency-log entry"},
	}
}

// TestKeyless checks keyless signatures in cosign's classic scheme and as
// bundles against the same cases: the right identity is allowed, and each
// way of getting it wrong is denied with its own reason.
func TestKeyless(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	vNoCT, err := New(WithTrustedRootFiles(ts.noCTFile))
	if err != nil {
		t.Fatal(err)
	}
	cases := keylessCases(t, ts)
	var wants []string
	for _, c := range cases {
		if c.want == "" {
			continue
		}
		for _, w := range wants {
			if strings.Contains(c.want, w) || strings.Contains(w, c.want) {
				t.Fatalf("reasons %q and %q are not distinct", w, c.want)
			}
		}
		wants = append(wants, c.want)
	}
	for _, form := range []string{"classic", "bundle"} {
		for _, c := range cases {
			t.Run(form+"/"+c.name, func(t *testing.T) {
				o := ts.defaultLeaf()
				if c.leaf != nil {
					c.leaf(&o)
				}
				var p, other keylessParts
				if form == "classic" {
					p = ts.classicParts(t, o, testDigest)
					other = ts.classicParts(t, ts.defaultLeaf(), testDigest)
				} else {
					p = ts.bundleParts(t, o, CosignSignPredicateType, testDigest, nil)
					other = ts.bundleParts(t, ts.defaultLeaf(), CosignSignPredicateType, testDigest, nil)
				}
				if c.mutate != nil {
					c.mutate(t, &p, other)
				}
				auth := keylessAuthority(c.auth)
				auth.TransparencyLog = c.tlog
				auth.SkipSCT = c.skip
				req := &policy.Signatures{Authorities: []*policy.Authority{auth}}
				var sigs []artifact.Signature
				var bundles []artifact.Bundle
				if form == "classic" {
					sigs = []artifact.Signature{p.classic(t, c.tsa)}
				} else {
					bundles = []artifact.Bundle{p.bundle(t, ts, c.tsa)}
				}
				vv := v
				if c.noCT {
					vv = vNoCT
				}
				res := vv.VerifySignaturesAndBundles(context.Background(), Subject{Repository: testRepo, Digest: testDigest}, sigs, bundles, req)
				if c.want == "" {
					if !res.Satisfied || len(res.By) != 1 {
						t.Fatalf("not allowed: %q", res.Reasons)
					}
					by := res.By[0]
					wantKind := KindCosignSignature
					if form == "bundle" {
						wantKind = KindBundle
					}
					o := ts.defaultLeaf()
					if c.leaf != nil {
						c.leaf(&o)
					}
					if by.Issuer != o.issuer || by.Subject != o.subject || by.Kind != wantKind || by.Digest != testDigest || by.KeyID != "" || by.Authority != "keyless release" {
						t.Errorf("satisfier %+v", by)
					}
					if c.wantTSA {
						if by.SignedAt.IsZero() || by.SignedAt.Sub(ts.now).Abs() > time.Minute {
							t.Errorf("SignedAt = %v, want the TSA time near %v", by.SignedAt, ts.now)
						}
					} else if !by.SignedAt.Equal(time.Unix(ts.now.Unix(), 0)) {
						t.Errorf("SignedAt = %v, want the integrated time %v", by.SignedAt, time.Unix(ts.now.Unix(), 0))
					}
					if len(res.Reasons) != 0 {
						t.Errorf("reasons on success: %q", res.Reasons)
					}
					return
				}
				if res.Satisfied {
					t.Fatalf("allowed: %+v", res.By)
				}
				if len(res.Reasons) != 2 {
					t.Fatalf("reasons = %q, want one for the signature and the summary", res.Reasons)
				}
				reason := res.Reasons[0]
				if !strings.Contains(reason, c.want) {
					t.Fatalf("reason = %q\nwant it to contain %q", reason, c.want)
				}
				for _, w := range wants {
					if w != c.want && strings.Contains(reason, w) {
						t.Errorf("reason %q also contains another case's reason %q", reason, w)
					}
				}
			})
		}
	}
}

// TestVerifySignatureKeyless checks the single-signature entry point with
// a keyless authority: the certificate, then the payload.
func TestVerifySignatureKeyless(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	p := ts.classicParts(t, ts.defaultLeaf(), testDigest)
	sig := p.classic(t, false)
	auth := keylessAuthority(nil)
	got, err := v.VerifySignature(Subject{Repository: testRepo, Digest: testDigest}, sig, auth, policy.MatchRepository)
	if err != nil {
		t.Fatal(err)
	}
	want := Satisfier{Authority: "keyless release", Issuer: testIssuer, Subject: testSubject, SignedAt: timeUnix(ts.now).UTC(), Kind: KindCosignSignature, Digest: testDigest}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	_, err = v.VerifySignature(Subject{Repository: testRepo, Digest: siblingDigest}, sig, auth, policy.MatchRepository)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("another digest: %v", err)
	}
	_, err = v.VerifySignature(Subject{Repository: testRepo, Digest: testDigest}, sig, keylessAuthority(func(k *policy.KeylessAuthority) { k.Subject = "x" }), policy.MatchRepository)
	if !errors.Is(err, ErrIdentityMismatch) || !strings.HasPrefix(err.Error(), "keyless release: certificate identity:") {
		t.Errorf("another identity: %v", err)
	}
	sig.RekorBundle = nil
	_, err = v.VerifySignature(Subject{Repository: testRepo, Digest: testDigest}, sig, auth, policy.MatchRepository)
	if !errors.Is(err, ErrTransparencyLog) {
		t.Errorf("no log entry: %v", err)
	}
	sig.RekorBundle = []byte(`{}`)
	auth.TransparencyLog = policy.TlogOptional
	_, err = v.VerifySignature(Subject{Repository: testRepo, Digest: testDigest}, sig, auth, policy.MatchRepository)
	if !errors.Is(err, ErrTransparencyLog) || !strings.Contains(err.Error(), "invalid Rekor bundle annotation") {
		t.Errorf("malformed log entry, log optional: %v", err)
	}
}
