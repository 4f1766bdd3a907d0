package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	rekordsse "github.com/sigstore/rekor/pkg/types/dsse"
	"github.com/sigstore/rekor/pkg/types/hashedrekord"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rekorPub is the VirtualSigstore's Rekor key as a policy rekorKey.
func (ts *testSigstore) rekorPub() *policy.PublicKeyFile {
	for _, l := range ts.vs.RekorLogs() {
		return &policy.PublicKeyFile{Path: "keys/rekor.pub", PublicKey: l.PublicKey}
	}
	return nil
}

// keyImageBundle is what cosign sign --new-bundle-format --key K
// --tlog-upload=false attaches: a DSSE cosign/sign/v1 statement for digest
// with a public key hint, optionally with a dsse log entry.
func keyImageBundle(t testing.TB, ts *testSigstore, key *ecdsa.PrivateKey, digest string, logged bool) artifact.Bundle {
	t.Helper()
	st := statementJSON(t, CosignSignPredicateType, digest, nil)
	env, sig := dsseSign(t, key, st)
	o := bundleOpts{key: key.Public()}
	if logged {
		e := ts.logEntry(t, rekordsse.KIND, env, pubPEM(t, key.Public()), sig, ts.now)
		o.entry = ts.proto(t, e, rekordsse.KIND, true)
	}
	return artifact.Bundle{JSON: dsseBundle(t, nil, st, sig, o), MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json", Origin: "referrer"}
}

func TestBundleSignatures(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	key, other := ecKey(t), ecKey(t)
	auth := func(mod func(*policy.Authority)) *policy.Authority {
		a := keyAuthority(t, "keys/release.pub", key.Public())
		if mod != nil {
			mod(a)
		}
		return a
	}
	keyless := ts.bundleParts(t, ts.defaultLeaf(), CosignSignPredicateType, testDigest, nil)
	msgSig := signECDSA(t, key, []byte("manifest"))
	tests := []struct {
		name      string
		bundle    artifact.Bundle
		auth      *policy.Authority
		want      string // "" allowed
		wantTime  bool
		mediaType string
	}{
		{name: "key, no log entry", bundle: keyImageBundle(t, ts, key, testDigest, false), auth: auth(nil)},
		{name: "key, log entry verified when present", bundle: keyImageBundle(t, ts, key, testDigest, true), auth: auth(nil), wantTime: true},
		{name: "key, log entry required and present", bundle: keyImageBundle(t, ts, key, testDigest, true), auth: auth(func(a *policy.Authority) { a.TransparencyLog = policy.TlogRequired }), wantTime: true},
		{name: "key, rekorKey names the log", bundle: keyImageBundle(t, ts, key, testDigest, true), auth: auth(func(a *policy.Authority) { a.Key.Rekor = ts.rekorPub() }), wantTime: true},
		{name: "another key", bundle: keyImageBundle(t, ts, other, testDigest, false), auth: auth(nil), want: "the signature does not verify"},
		{name: "key, log entry required and missing", bundle: keyImageBundle(t, ts, key, testDigest, false), auth: auth(func(a *policy.Authority) { a.TransparencyLog = policy.TlogRequired }),
			want: "no transparency-log entry, and the authority requires one"},
		{name: "key, rekorKey of another log", bundle: keyImageBundle(t, ts, key, testDigest, true), auth: auth(func(a *policy.Authority) {
			a.Key.Rekor = &policy.PublicKeyFile{Path: "keys/other-rekor.pub", PublicKey: ecKey(t).Public()}
		}), want: "from a log the trust store does not know"},
		{name: "signature for another image", bundle: keyImageBundle(t, ts, key, siblingDigest, false), auth: auth(nil),
			want: "the statement's subject is " + siblingDigest + ", not " + testDigest},
		{name: "message signature", bundle: artifact.Bundle{JSON: messageBundle(t, nil, []byte("manifest"), msgSig, bundleOpts{key: key.Public()})}, auth: auth(nil),
			want: "a message-signature bundle names no image"},
		{name: "certificate for a key authority", bundle: keyless.bundle(t, ts, false), auth: auth(nil),
			want: "key keys/release.pub: signed with a certificate, not with the authority's key"},
		{name: "not a bundle media type", bundle: keyImageBundle(t, ts, key, testDigest, false), mediaType: "application/vnd.oci.image.manifest.v1+json", auth: auth(nil),
			want: "is not a Sigstore bundle"},
		{name: "garbage", bundle: artifact.Bundle{JSON: []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","unknown":1}`)}, auth: auth(nil),
			want: "invalid Sigstore bundle"},
	}
	subject := Subject{Repository: testRepo, Digest: testDigest}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mediaType != "" {
				tt.bundle.MediaType = tt.mediaType
			}
			res := v.VerifyBundleSignatures(context.Background(), subject, []artifact.Bundle{tt.bundle}, &policy.Signatures{Authorities: []*policy.Authority{tt.auth}})
			if tt.want == "" {
				if !res.Satisfied || len(res.Reasons) != 0 {
					t.Fatalf("not allowed: %+v", res)
				}
				by := res.By[0]
				if by.KeyID != keyIDOf(t, key.Public()) || by.Kind != KindBundle || by.PredicateType != CosignSignPredicateType || by.Digest != testDigest {
					t.Errorf("satisfier %+v", by)
				}
				if tt.wantTime != !by.SignedAt.IsZero() || (tt.wantTime && !by.SignedAt.Equal(timeUnix(ts.now))) {
					t.Errorf("SignedAt = %v, want the log's time: %v", by.SignedAt, tt.wantTime)
				}
				return
			}
			if res.Satisfied {
				t.Fatalf("allowed: %+v", res)
			}
			if got := strings.Join(res.Reasons, "\n"); !strings.Contains(got, tt.want) {
				t.Fatalf("reasons:\n%s\nwant one containing %q", got, tt.want)
			}
		})
	}
}

// TestClassicKeyLog checks classic key signatures whose Rekor bundle
// annotation is verified: when required, against the authority's rekorKey
// or the trusted root, and when merely present with a known log.
func TestClassicKeyLog(t *testing.T) {
	ts := newTestSigstore(t)
	withRoot := ts.verifier(t)
	noRoot := newVerifier(t)
	k := keys(t)["a"]
	pemKey := pubPEM(t, k.public())
	payload := cosignPayload(t, testRepo, testDigest)
	sig := sign(t, k, payload, "o")
	entry := ts.logEntry(t, hashedrekord.KIND, payload, pemKey, sig.Signature, ts.now)
	logged := sig
	logged.RekorBundle = entry.annotation(t)
	otherSig := sign(t, k, cosignPayload(t, testRepo+":v2", testDigest), "o")
	otherEntry := ts.logEntry(t, hashedrekord.KIND, otherSig.Payload, pemKey, otherSig.Signature, ts.now)
	swapped := sig
	swapped.RekorBundle = otherEntry.annotation(t)
	altered := entry
	altered.integratedTime -= 60
	alteredSig := sig
	alteredSig.RekorBundle = altered.annotation(t)
	withTSA := logged
	withTSA.Timestamp = tsaAnnotation(t, ts.timestamp(t, sig.Signature))

	malformed := sig
	malformed.RekorBundle = []byte(`{"SignedEntryTimestamp":"x"}`)
	rekorKey := func(a *policy.Authority) { a.Key.Rekor = ts.rekorPub() }
	required := func(a *policy.Authority) { a.TransparencyLog = policy.TlogRequired }
	tests := []struct {
		name     string
		v        *Verifier
		sig      artifact.Signature
		mod      func(*policy.Authority)
		want     string
		wantTime bool
	}{
		{name: "rekorKey, entry present", v: noRoot, sig: logged, mod: rekorKey, wantTime: true},
		{name: "required, root's log", v: withRoot, sig: logged, mod: required, wantTime: true},
		{name: "optional, known log, entry verified", v: withRoot, sig: logged, wantTime: true},
		{name: "optional, entry and TSA timestamp", v: withRoot, sig: withTSA, wantTime: true},
		{name: "optional, no Rekor key anywhere: entry not checked", v: noRoot, sig: logged},
		{name: "optional, no entry", v: withRoot, sig: sig},
		{name: "rekorKey, entry missing", v: noRoot, sig: sig, mod: rekorKey, want: "no transparency-log entry, and the authority requires one"},
		{name: "required, no Rekor key anywhere", v: noRoot, sig: logged, mod: required, want: "no Rekor key to verify the transparency-log entry with"},
		{name: "rekorKey, entry about another signature", v: noRoot, sig: swapped, mod: rekorKey, want: "the transparency-log entry is about another signature"},
		{name: "optional, known log, entry about another signature", v: withRoot, sig: swapped, want: "the transparency-log entry is about another signature"},
		{name: "rekorKey, altered entry", v: noRoot, sig: alteredSig, mod: rekorKey, want: "no transparency-log entry verifies against the Rekor keys"},
		{name: "optional, malformed annotation not looked at", v: withRoot, sig: malformed},
		{name: "required, malformed annotation", v: withRoot, sig: malformed, mod: required,
			want: "invalid Rekor bundle annotation (dev.sigstore.cosign/bundle)"},
	}
	subject := Subject{Repository: testRepo, Digest: testDigest}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := keyAuthority(t, "keys/a.pub", k.public())
			if tt.mod != nil {
				tt.mod(a)
			}
			res := tt.v.VerifySignatures(context.Background(), subject, []artifact.Signature{tt.sig}, &policy.Signatures{Authorities: []*policy.Authority{a}})
			if tt.want == "" {
				if !res.Satisfied {
					t.Fatalf("not allowed: %q", res.Reasons)
				}
				at := res.By[0].SignedAt
				if tt.wantTime != !at.IsZero() || (tt.wantTime && at.Sub(ts.now).Abs() > time.Minute) {
					t.Errorf("SignedAt = %v (want a time: %v)", at, tt.wantTime)
				}
				return
			}
			if res.Satisfied {
				t.Fatalf("allowed: %+v", res)
			}
			if got := strings.Join(res.Reasons, "\n"); !strings.Contains(got, tt.want) {
				t.Fatalf("reasons:\n%s\nwant one containing %q", got, tt.want)
			}
		})
	}
}

// TestThresholdAcrossKinds checks that a classic signature and a bundle
// by two authorities meet a threshold of two, and that one signer in both
// forms counts once.
func TestThresholdAcrossKinds(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	a, b := ecKey(t), ecKey(t)
	ka := keys(t)["a"]
	authA := keyAuthority(t, "keys/a.pub", ka.public())
	authB := keyAuthority(t, "keys/b.pub", b.Public())
	_ = a
	sigA := sign(t, ka, cosignPayload(t, testRepo, testDigest), "sig")
	bundleB := keyImageBundle(t, ts, b, testDigest, false)
	keyless := ts.classicParts(t, ts.defaultLeaf(), testDigest)
	authKL := keylessAuthority(nil)
	authKL2 := keylessAuthority(func(k *policy.KeylessAuthority) { k.SourceRepositoryURI = policy.StringMatch{Exact: testRepoURI} })
	authKL2.Name = "keyless release (repository)"
	subject := Subject{Repository: testRepo, Digest: testDigest}

	res := v.VerifySignaturesAndBundles(context.Background(), subject, []artifact.Signature{sigA}, []artifact.Bundle{bundleB}, &policy.Signatures{Threshold: 2, Authorities: []*policy.Authority{authA, authB}})
	if !res.Satisfied || len(res.By) != 2 || res.By[0].Kind != KindCosignSignature || res.By[1].Kind != KindBundle {
		t.Fatalf("classic + bundle: %+v", res)
	}
	res = v.VerifySignaturesAndBundles(context.Background(), subject, []artifact.Signature{sigA}, nil, &policy.Signatures{Threshold: 2, Authorities: []*policy.Authority{authA, authB}})
	if res.Satisfied || len(res.By) != 1 {
		t.Fatalf("classic only: %+v", res)
	}
	// One certificate identity matching two keyless authorities is one signer.
	res = v.VerifySignaturesAndBundles(context.Background(), subject, []artifact.Signature{keyless.classic(t, false)}, nil, &policy.Signatures{Threshold: 2, Authorities: []*policy.Authority{authKL, authKL2}})
	if res.Satisfied || len(res.By) != 1 || strings.Join(res.Reasons, "|") != "1 of 2 required authorities verified" {
		t.Fatalf("one identity, two authorities: %+v", res)
	}
}
