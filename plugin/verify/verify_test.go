package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

const testRepo = "127.0.0.1:5000/app"

var (
	testDigest    = digestOf("app")
	siblingDigest = digestOf("sibling")
)

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// testKey is a private key and the sigstore signer that signs with it the
// way a given cosign code path does.
type testKey struct {
	priv crypto.Signer
	sv   signature.Signer
}

func (k testKey) public() crypto.PublicKey { return k.priv.Public() }

// newKey generates a key of kind and loads the signer cosign would use.
func newKey(t testing.TB, kind string) testKey {
	t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch kind {
	case "p256", "p384", "p384-sha256", "p224":
		curve := map[string]elliptic.Curve{"p256": elliptic.P256(), "p384": elliptic.P384(), "p384-sha256": elliptic.P384(), "p224": elliptic.P224()}[kind]
		priv, err = ecdsa.GenerateKey(curve, rand.Reader)
	case "ed25519", "ed25519ph":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "rsa2048", "rsa2048-pss", "rsa1024":
		bits := 2048
		if kind == "rsa1024" {
			bits = 1024
		}
		priv, err = rsa.GenerateKey(rand.Reader, bits)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	var sv signature.Signer
	switch kind {
	case "p384-sha256", "p224":
		// cosign before v2.2 signed every ECDSA key with SHA-256.
		sv, err = signature.LoadSignerVerifier(priv, crypto.SHA256)
	case "ed25519ph":
		// cosign v2 `sign --key` on an image.
		sv, err = signature.LoadDefaultSignerVerifier(priv, sigopts.WithED25519ph())
	case "rsa2048-pss":
		sv, err = signature.LoadDefaultSignerVerifier(priv, sigopts.WithRSAPSS(&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}))
	case "rsa1024":
		sv, err = signature.LoadSignerVerifier(priv, crypto.SHA256)
	default:
		// cosign v2 `sign --key` and `sign-blob --key`.
		sv, err = signature.LoadDefaultSignerVerifier(priv)
	}
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv: priv, sv: sv}
}

func keyAuthority(t testing.TB, name string, pub crypto.PublicKey) *policy.Authority {
	t.Helper()
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		// Keys sigstore cannot marshal (P-224) still reach the verifier.
		pemBytes = nil
	}
	return &policy.Authority{Name: "key " + name, Key: &policy.KeyAuthority{Path: name, File: "/etc/sealgate/" + name, PEM: pemBytes, PublicKey: pub}}
}

// cosignPayload is the simple-signing payload cosign writes, built with
// cosign's own payload type.
func cosignPayload(t testing.TB, ref, digest string) []byte {
	t.Helper()
	d, err := name.NewDigest(testRepo + "@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sigpayload.Cosign{Image: d, ClaimedIdentity: ref}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if ref == "" { // Cosign falls back to the image repository; force empty.
		b = bytes.Replace(b, []byte(`"docker-reference":"`+testRepo+`"`), []byte(`"docker-reference":""`), 1)
	}
	return b
}

func sign(t testing.TB, k testKey, payload []byte, origin string) artifact.Signature {
	t.Helper()
	sig, err := k.sv.SignMessage(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	return artifact.Signature{Payload: payload, Signature: sig, Origin: origin, Attached: testDigest}
}

func keyIDOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

var (
	fixtureOnce sync.Once
	fixtureKeys map[string]testKey
)

// keys returns keys generated once per test binary: a and b (P-256), and
// one per other kind.
func keys(t testing.TB) map[string]testKey {
	fixtureOnce.Do(func() {
		fixtureKeys = map[string]testKey{"a": newKey(t, "p256"), "b": newKey(t, "p256")}
		for _, kind := range []string{"p384", "p384-sha256", "ed25519", "ed25519ph", "rsa2048", "rsa2048-pss", "rsa1024", "p224"} {
			fixtureKeys[kind] = newKey(t, kind)
		}
	})
	return fixtureKeys
}

func TestVerifySignaturesKeyTypes(t *testing.T) {
	ks := keys(t)
	tests := []struct {
		kind string
		ok   bool
	}{
		{"a", true},
		{"p384", true},
		{"p384-sha256", true},
		{"ed25519", true},
		{"ed25519ph", true},
		{"rsa2048", true},
		// cosign never signs with PSS from a key file; it is not accepted.
		{"rsa2048-pss", false},
	}
	v := newVerifier(t)
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			k := ks[tt.kind]
			req := &policy.Signatures{Threshold: 1, Authorities: []*policy.Authority{keyAuthority(t, tt.kind+".pub", k.public())}}
			sig := sign(t, k, cosignPayload(t, testRepo+":v1", testDigest), "o0")
			res := v.VerifySignatures(context.Background(), Subject{Repository: testRepo, Digest: testDigest}, []artifact.Signature{sig}, req)
			if res.Satisfied != tt.ok {
				t.Fatalf("Satisfied = %v, want %v; reasons %q", res.Satisfied, tt.ok, res.Reasons)
			}
			if !tt.ok {
				return
			}
			want := []Satisfier{{Authority: "key " + tt.kind + ".pub", KeyID: keyIDOf(t, k.public()), Digest: testDigest, Kind: KindCosignSignature, Origin: "o0"}}
			if fmt.Sprint(res.By) != fmt.Sprint(want) || len(res.Reasons) != 0 {
				t.Fatalf("By = %+v, reasons %q; want %+v and no reasons", res.By, res.Reasons, want)
			}
		})
	}
}

func newVerifier(t testing.TB) *Verifier {
	t.Helper()
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifySignatures(t *testing.T) {
	ks := keys(t)
	a, b := ks["a"], ks["b"]
	authA := keyAuthority(t, "keys/a.pub", a.public())
	authB := keyAuthority(t, "keys/b.pub", b.public())
	authA2 := keyAuthority(t, "keys/a-copy.pub", a.public())
	authP224 := keyAuthority(t, "keys/p224.pub", ks["p224"].public())
	authRSA1024 := keyAuthority(t, "keys/rsa1024.pub", ks["rsa1024"].public())
	keyless := &policy.Authority{Name: "keyless https://issuer subject", Keyless: &policy.KeylessAuthority{Issuer: "https://issuer", Subject: "subject"}}

	good := cosignPayload(t, testRepo, testDigest)
	goodSig := func(k testKey, origin string) artifact.Signature { return sign(t, k, good, origin) }
	withPayload := func(p string) artifact.Signature { return sign(t, a, []byte(p), "o0") }
	tamperedPayload := goodSig(a, "o0")
	tamperedPayload.Payload = cosignPayload(t, testRepo, siblingDigest)
	tamperedSig := goodSig(a, "o0")
	tamperedSig.Signature = append([]byte(nil), tamperedSig.Signature...)
	tamperedSig.Signature[len(tamperedSig.Signature)-1] ^= 1
	noSigBytes := goodSig(a, "o0")
	noSigBytes.Signature = nil
	dupKey := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q,"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, testRepo, siblingDigest, testDigest)
	atomic := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"atomic container signature"}}`, testRepo, testDigest)

	const one = "0 of 1 required authorities verified"
	tests := []struct {
		name      string
		sigs      []artifact.Signature
		auths     []*policy.Authority
		threshold int
		identity  policy.SignedIdentity
		subject   *Subject
		nilReq    bool
		cancel    bool
		want      bool
		wantBy    []string
		// wantReasons match Reasons exactly, in order; an entry ending in
		// "*" matches as a prefix.
		wantReasons []string
	}{
		{name: "good signature", sigs: []artifact.Signature{goodSig(a, "o0")}, auths: []*policy.Authority{authA}, want: true, wantBy: []string{"key keys/a.pub"}},
		{name: "wrong key", sigs: []artifact.Signature{goodSig(b, "o0")}, auths: []*policy.Authority{authA},
			wantReasons: []string{"sig 0 (o0): not signed by any trusted key (tried key keys/a.pub)", one}},
		{name: "tampered payload", sigs: []artifact.Signature{tamperedPayload}, auths: []*policy.Authority{authA},
			wantReasons: []string{"sig 0 (o0): not signed by any trusted key (tried key keys/a.pub)", one}},
		{name: "tampered signature", sigs: []artifact.Signature{tamperedSig}, auths: []*policy.Authority{authA, authB},
			wantReasons: []string{"sig 0 (o0): not signed by any trusted key (tried key keys/a.pub, key keys/b.pub)", one}},
		{name: "empty signature", sigs: []artifact.Signature{noSigBytes}, auths: []*policy.Authority{authA},
			wantReasons: []string{"sig 0 (o0): no signature bytes (the dev.cosignproject.cosign/signature annotation is missing or empty)", one}},
		{name: "digest mismatch", sigs: []artifact.Signature{sign(t, a, cosignPayload(t, testRepo, siblingDigest), "o0")}, auths: []*policy.Authority{authA},
			wantReasons: []string{"sig 0 (o0): payload is for " + siblingDigest + ", not " + testDigest + " (signature copied from another image?)", one}},
		{name: "reference mismatch under matchRepository", sigs: []artifact.Signature{sign(t, a, cosignPayload(t, "127.0.0.1:5000/other:v1", testDigest), "o0")}, auths: []*policy.Authority{authA}, identity: policy.MatchRepository,
			wantReasons: []string{"sig 0 (o0): payload names repository 127.0.0.1:5000/other, rule expects 127.0.0.1:5000/app (signatures.signedIdentity)", one}},
		{name: "reference mismatch under default identity", sigs: []artifact.Signature{sign(t, a, cosignPayload(t, "127.0.0.1:5000/other", testDigest), "o0")}, auths: []*policy.Authority{authA},
			wantReasons: []string{"sig 0 (o0): payload names repository 127.0.0.1:5000/other, rule expects 127.0.0.1:5000/app (signatures.signedIdentity)", one}},
		{name: "reference mismatch under any", sigs: []artifact.Signature{sign(t, a, cosignPayload(t, "127.0.0.1:5000/other", testDigest), "o0")}, auths: []*policy.Authority{authA}, identity: policy.MatchAny,
			want: true, wantBy: []string{"key keys/a.pub"}},
		{name: "empty reference under matchRepository", sigs: []artifact.Signature{sign(t, a, cosignPayload(t, "", testDigest), "o0")}, auths: []*policy.Authority{authA},
			wantReasons: []string{"sig 0 (o0): payload names no repository (empty docker-reference), rule expects 127.0.0.1:5000/app (signatures.signedIdentity)", one}},
		{name: "empty reference under any", sigs: []artifact.Signature{sign(t, a, cosignPayload(t, "", testDigest), "o0")}, auths: []*policy.Authority{authA}, identity: policy.MatchAny,
			want: true, wantBy: []string{"key keys/a.pub"}},
		{name: "invalid reference", sigs: []artifact.Signature{sign(t, a, cosignPayload(t, "Not A Ref", testDigest), "o0")}, auths: []*policy.Authority{authA},
			wantReasons: []string{`sig 0 (o0): payload names "Not A Ref", which is not an image reference; rule expects 127.0.0.1:5000/app (signatures.signedIdentity)`, one}},
		{name: "docker hub normalisation", sigs: []artifact.Signature{sign(t, a, cosignPayload(t, "nginx:1.25", testDigest), "o0")}, auths: []*policy.Authority{authA},
			subject: &Subject{Repository: "docker.io/library/nginx", Digest: testDigest}, want: true, wantBy: []string{"key keys/a.pub"}},
		{name: "reference with digest", sigs: []artifact.Signature{sign(t, a, cosignPayload(t, testRepo+"@"+testDigest, testDigest), "o0")}, auths: []*policy.Authority{authA},
			want: true, wantBy: []string{"key keys/a.pub"}},
		{name: "unknown signedIdentity fails closed", sigs: []artifact.Signature{goodSig(a, "o0")}, auths: []*policy.Authority{authA}, identity: "exact",
			wantReasons: []string{`sig 0 (o0): unknown signatures.signedIdentity "exact"`, one}},
		{name: "unparseable payload", sigs: []artifact.Signature{withPayload("not json")}, auths: []*policy.Authority{authA},
			wantReasons: []string{"sig 0 (o0): invalid signature payload: invalid JSON: *", one}},
		{name: "duplicate JSON key", sigs: []artifact.Signature{withPayload(dupKey)}, auths: []*policy.Authority{authA},
			wantReasons: []string{`sig 0 (o0): invalid signature payload: invalid JSON: duplicate key "docker-manifest-digest" in critical.image`, one}},
		{name: "atomic container signature type", sigs: []artifact.Signature{withPayload(atomic)}, auths: []*policy.Authority{authA},
			want: true, wantBy: []string{"key keys/a.pub"}},
		{name: "signature checked before payload is read", sigs: []artifact.Signature{sign(t, b, []byte("not json"), "o0")}, auths: []*policy.Authority{authA},
			wantReasons: []string{"sig 0 (o0): not signed by any trusted key (tried key keys/a.pub)", one}},
		{name: "threshold 2 with one authority signing", sigs: []artifact.Signature{goodSig(a, "o0")}, auths: []*policy.Authority{authA, authB}, threshold: 2,
			wantBy: []string{"key keys/a.pub"}, wantReasons: []string{"1 of 2 required authorities verified"}},
		{name: "threshold 2 with two authorities signing", sigs: []artifact.Signature{goodSig(b, "o0"), goodSig(a, "o1")}, auths: []*policy.Authority{authA, authB}, threshold: 2,
			want: true, wantBy: []string{"key keys/a.pub", "key keys/b.pub"}},
		{name: "threshold 2 with the same key named twice", sigs: []artifact.Signature{goodSig(a, "o0")}, auths: []*policy.Authority{authA, authA2}, threshold: 2,
			wantBy: []string{"key keys/a.pub"}, wantReasons: []string{"1 of 2 required authorities verified"}},
		{name: "two signatures by one authority count once", sigs: []artifact.Signature{goodSig(a, "o0"), goodSig(a, "o1")}, auths: []*policy.Authority{authA, authB}, threshold: 2,
			wantBy: []string{"key keys/a.pub"}, wantReasons: []string{"1 of 2 required authorities verified"}},
		{name: "several signatures, one good", sigs: []artifact.Signature{goodSig(b, "o0"), sign(t, a, cosignPayload(t, testRepo, siblingDigest), "o1"), goodSig(a, "o2"), withPayload("{}")},
			auths: []*policy.Authority{authA}, want: true, wantBy: []string{"key keys/a.pub"},
			wantReasons: []string{
				"sig 0 (o0): not signed by any trusted key (tried key keys/a.pub)",
				"sig 1 (o1): payload is for " + siblingDigest + ", not " + testDigest + " (signature copied from another image?)",
				"sig 3 (o0): invalid signature payload: critical is missing",
			}},
		{name: "satisfiers in authority order", sigs: []artifact.Signature{goodSig(b, "o0"), goodSig(a, "o1")}, auths: []*policy.Authority{authA, authB},
			want: true, wantBy: []string{"key keys/a.pub", "key keys/b.pub"}},
		{name: "keyless authority", sigs: []artifact.Signature{goodSig(a, "o0")}, auths: []*policy.Authority{keyless},
			wantReasons: []string{"sig 0 (o0): unusable authorities: keyless https://issuer subject: no trusted root with a Fulcio CA is loaded; keyless authorities need trustedRoot", one}},
		{name: "keyless beside a key that signed", sigs: []artifact.Signature{goodSig(a, "o0")}, auths: []*policy.Authority{keyless, authA},
			want: true, wantBy: []string{"key keys/a.pub"}},
		{name: "keyless beside a key that did not sign", sigs: []artifact.Signature{goodSig(b, "o0")}, auths: []*policy.Authority{keyless, authA},
			wantReasons: []string{"sig 0 (o0): not signed by any trusted key (tried key keys/a.pub); unusable authorities: keyless https://issuer subject: no trusted root with a Fulcio CA is loaded; keyless authorities need trustedRoot", one}},
		{name: "unusable keys", sigs: []artifact.Signature{goodSig(ks["p224"], "o0"), sign(t, ks["rsa1024"], good, "")}, auths: []*policy.Authority{authP224, authRSA1024},
			wantReasons: []string{
				"sig 0 (o0): unusable authorities: key keys/p224.pub: unsupported: ECDSA curve P-224 (use P-256, P-384 or P-521); key keys/rsa1024.pub: unsupported: RSA key shorter than 2048 bits",
				"sig 1: unusable authorities: key keys/p224.pub: unsupported: ECDSA curve P-224 (use P-256, P-384 or P-521); key keys/rsa1024.pub: unsupported: RSA key shorter than 2048 bits",
				one,
			}},
		{name: "no signatures", auths: []*policy.Authority{authA}, wantReasons: []string{"no signatures found", one}},
		{name: "threshold above authorities", sigs: []artifact.Signature{goodSig(a, "o0")}, auths: []*policy.Authority{authA}, threshold: 2,
			wantBy: []string{"key keys/a.pub"}, wantReasons: []string{"threshold 2 exceeds the 1 authorities the rule lists", "1 of 2 required authorities verified"}},
		{name: "no authorities", sigs: []artifact.Signature{goodSig(a, "o0")}, wantReasons: []string{"the rule lists no signature authorities"}},
		{name: "nil requirements", sigs: []artifact.Signature{goodSig(a, "o0")}, nilReq: true, wantReasons: []string{"the rule has no signatures section to verify against"}},
		{name: "invalid subject digest", sigs: []artifact.Signature{goodSig(a, "o0")}, auths: []*policy.Authority{authA}, subject: &Subject{Repository: testRepo, Digest: "latest"},
			wantReasons: []string{`image digest "latest" is not a sha256 or sha512 digest`}},
		{name: "context done", sigs: []artifact.Signature{goodSig(a, "o0")}, auths: []*policy.Authority{authA}, cancel: true,
			wantReasons: []string{"stopped before sig 0 of 1: context canceled", one}},
	}
	v := newVerifier(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			subject := Subject{Repository: testRepo, Digest: testDigest}
			if tt.subject != nil {
				subject = *tt.subject
			}
			var req *policy.Signatures
			if !tt.nilReq {
				req = &policy.Signatures{Threshold: tt.threshold, Authorities: tt.auths, SignedIdentity: tt.identity}
			}
			res := v.VerifySignatures(ctx, subject, tt.sigs, req)
			if res.Satisfied != tt.want {
				t.Errorf("Satisfied = %v, want %v", res.Satisfied, tt.want)
			}
			var by []string
			for _, s := range res.By {
				by = append(by, s.Authority)
				if s.Digest != subject.Digest || !strings.HasPrefix(s.KeyID, "sha256:") {
					t.Errorf("satisfier %+v: want digest %s and a sha256 key ID", s, subject.Digest)
				}
			}
			if strings.Join(by, "|") != strings.Join(tt.wantBy, "|") {
				t.Errorf("By = %q, want %q", by, tt.wantBy)
			}
			if !reasonsMatch(res.Reasons, tt.wantReasons) {
				t.Errorf("Reasons =\n  %s\nwant\n  %s", strings.Join(res.Reasons, "\n  "), strings.Join(tt.wantReasons, "\n  "))
			}
		})
	}
}

func reasonsMatch(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if p, ok := strings.CutSuffix(want[i], "*"); ok {
			if !strings.HasPrefix(got[i], p) {
				return false
			}
		} else if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestVerifySignature(t *testing.T) {
	ks := keys(t)
	a := ks["a"]
	authA := keyAuthority(t, "keys/a.pub", a.public())
	subject := Subject{Repository: testRepo, Digest: testDigest}
	good := sign(t, a, cosignPayload(t, testRepo, testDigest), "o")
	badSig := sign(t, ks["b"], good.Payload, "o")
	tests := []struct {
		name     string
		sig      artifact.Signature
		auth     *policy.Authority
		identity policy.SignedIdentity
		wantErr  error
	}{
		{"good", good, authA, policy.MatchRepository, nil},
		{"wrong key", badSig, authA, policy.MatchRepository, ErrBadSignature},
		{"no signature bytes", artifact.Signature{Payload: good.Payload}, authA, policy.MatchRepository, ErrBadSignature},
		{"digest mismatch", sign(t, a, cosignPayload(t, testRepo, siblingDigest), "o"), authA, policy.MatchAny, ErrDigestMismatch},
		{"reference mismatch", sign(t, a, cosignPayload(t, "example.com/x", testDigest), "o"), authA, policy.MatchRepository, ErrReferenceMismatch},
		{"reference ignored under any", sign(t, a, cosignPayload(t, "example.com/x", testDigest), "o"), authA, policy.MatchAny, nil},
		{"bad payload", sign(t, a, []byte(`{"critical":1}`), "o"), authA, policy.MatchAny, ErrPayload},
		{"keyless", good, &policy.Authority{Name: "keyless x", Keyless: &policy.KeylessAuthority{Issuer: "x"}}, policy.MatchAny, ErrUnsupported},
		{"empty authority", good, &policy.Authority{Name: "nothing"}, policy.MatchAny, ErrUnsupported},
		{"nil authority", good, nil, policy.MatchAny, ErrUnsupported},
		{"unsupported key", good, keyAuthority(t, "keys/p224.pub", ks["p224"].public()), policy.MatchAny, ErrUnsupported},
	}
	sentinels := []error{ErrNoSignatures, ErrBadSignature, ErrDigestMismatch, ErrReferenceMismatch, ErrPayload, ErrUnsupported}
	v := newVerifier(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := v.VerifySignature(subject, tt.sig, tt.auth, tt.identity)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				want := Satisfier{Authority: "key keys/a.pub", KeyID: keyIDOf(t, a.public()), Digest: testDigest, Kind: KindCosignSignature}
				if s != want {
					t.Fatalf("Satisfier = %+v, want %+v", s, want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want one wrapping %v", err, tt.wantErr)
			}
			for _, other := range sentinels {
				if other != tt.wantErr && errors.Is(err, other) {
					t.Errorf("err %v also wraps %v", err, other)
				}
			}
			if s != (Satisfier{}) {
				t.Errorf("Satisfier = %+v on error", s)
			}
		})
	}
}

func TestNew(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New(nil option) succeeded")
	}
	boom := errors.New("boom")
	if _, err := New(func(*options) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("New(failing option) = %v, want it wrapped", err)
	}
}

// TestKeyCache checks that a key's verifiers are built once per
// KeyAuthority, not per decision.
func TestKeyCache(t *testing.T) {
	auth := keyAuthority(t, "keys/a.pub", keys(t)["a"].public())
	other := keyAuthority(t, "keys/a.pub", keys(t)["a"].public())
	var c keyCache
	k1, k2, k3 := c.get(auth.Key), c.get(auth.Key), c.get(other.Key)
	if k1 != k2 {
		t.Error("same KeyAuthority built twice")
	}
	if k1 == k3 {
		t.Error("distinct KeyAuthority shared an entry")
	}
	if k1.id != k3.id || k1.err != nil || len(k1.verifiers) == 0 {
		t.Errorf("entries %+v and %+v", k1, k3)
	}
}

// TestConcurrent is meant for -race: one Verifier, many decisions at once.
func TestConcurrent(t *testing.T) {
	ks := keys(t)
	req := &policy.Signatures{Threshold: 2, Authorities: []*policy.Authority{
		keyAuthority(t, "keys/a.pub", ks["a"].public()),
		keyAuthority(t, "keys/ed.pub", ks["ed25519ph"].public()),
	}}
	p := cosignPayload(t, testRepo, testDigest)
	sigs := []artifact.Signature{sign(t, ks["a"], p, "0"), sign(t, ks["ed25519ph"], p, "1")}
	v := newVerifier(t)
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for range 16 {
		wg.Go(func() {
			res := v.VerifySignatures(context.Background(), Subject{Repository: testRepo, Digest: testDigest}, sigs, req)
			if !res.Satisfied || len(res.By) != 2 {
				errs <- fmt.Sprintf("%+v", res)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func BenchmarkVerifySignatures(b *testing.B) {
	k := newKey(b, "p256")
	req := &policy.Signatures{Threshold: 1, Authorities: []*policy.Authority{keyAuthority(b, "keys/a.pub", k.public())}}
	sigs := []artifact.Signature{sign(b, k, cosignPayload(b, testRepo, testDigest), "o")}
	subject := Subject{Repository: testRepo, Digest: testDigest}
	v := newVerifier(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := v.VerifySignatures(ctx, subject, sigs, req); !res.Satisfied {
			b.Fatal(res.Reasons)
		}
	}
}
