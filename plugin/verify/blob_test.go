package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin/policy"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sigstore-go", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const sigstoreJSWorkflow = "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"

// TestSigstoreGoBundles verifies real Sigstore bundles that ship with
// sigstore-go (public-good Fulcio, Rekor and CT logs; a scaffolding
// deployment; a key-signed bundle with a TSA timestamp) against the
// trusted roots that ship beside them, with VerifyBlobBundle, offline. The
// identities and digests are read from the bundles' certificates and
// statements (and cross-checked with openssl).
func TestSigstoreGoBundles(t *testing.T) {
	keyless := func(issuer, subject string, mod func(*policy.KeylessAuthority)) *policy.Authority {
		k := &policy.KeylessAuthority{Issuer: issuer, Subject: subject}
		if mod != nil {
			mod(k)
		}
		return &policy.Authority{Name: "keyless", Keyless: k}
	}
	keyAuth := pemAuthority(t, filepath.Join("testdata", "sigstore-go", "public-key-validity.pem"))
	tests := []struct {
		name, bundle, root string
		art                ArtifactRef
		auth               *policy.Authority
		wantSigned         time.Time
		want               string // "" valid
	}{
		{name: "npm provenance (examples/bundle-provenance.json)", bundle: "bundle-provenance.json", root: "public-good.json",
			art: ArtifactRef{Digest: "sha512:76176ffa33808b54602c7c35de5c6e9a4deb96066dba6533f50ac234f4f1f4c6b3527515dc17c06fbe2860030f410eee69ea20079bd3a2c6f3dcf3b329b10751"},
			auth: keyless(testIssuer, sigstoreJSWorkflow, func(k *policy.KeylessAuthority) {
				k.SourceRepositoryURI = policy.StringMatch{Exact: "https://github.com/sigstore/sigstore-js"}
				k.SourceRepositoryRef = policy.StringMatch{Exact: "refs/heads/main"}
				k.BuildSignerURI = policy.StringMatch{Exact: sigstoreJSWorkflow}
			}),
			wantSigned: time.Unix(1681839912, 0)},
		{name: "sigstore-js 2.0.0 provenance", bundle: "sigstore.js@2.0.0-provenance.sigstore.json", root: "public-good.json",
			art:        ArtifactRef{Digest: "sha512:46d4e2f74c4877316640000a6fdf8a8b59f1e0847667973e9859f774dd31b8f1e0937813b777fb66a2ac67d50540fe34640966eee9fc2ccca387082b4c85cd3c"},
			auth:       keyless(testIssuer, sigstoreJSWorkflow, nil),
			wantSigned: time.Unix(1692374735, 0)},
		{name: "DSSE with email identity", bundle: "dsse.sigstore.json", root: "public-good.json",
			art:        ArtifactRef{Digest: "sha512:bbfd372fc9beeb777fe35d05bb10c0c70a9733d366a75fed7dd18866c7391de3ee7e88ba74dd47abf3e15c845e547fcf0e5c3da80854c751554224d3a6d4e55f"},
			auth:       keyless("https://github.com/login/oauth", "brian@dehamer.com", nil),
			wantSigned: time.Unix(1668034836, 0)},
		{name: "message signature, OtherName identity, scaffolding root", bundle: "othername.sigstore.json", root: "scaffolding.json",
			art:        ArtifactRef{Digest: "sha256:bc103b4a84971ef6459b294a2b98568a2bfb72cded09d4acd1e16366a401f95b"},
			auth:       keyless("http://oidc.local:8080", "foo!oidc.local", nil),
			wantSigned: time.Unix(1720811189, 0)},
		{name: "key and TSA timestamp, artifact bytes", bundle: "public-key-validity.sigstore.json", root: "public-key-validity.json",
			art: ArtifactRef{Data: strings.NewReader("test content")}, auth: keyAuth},

		{name: "npm provenance, another workflow", bundle: "bundle-provenance.json", root: "public-good.json",
			art:  ArtifactRef{Digest: "sha512:76176ffa33808b54602c7c35de5c6e9a4deb96066dba6533f50ac234f4f1f4c6b3527515dc17c06fbe2860030f410eee69ea20079bd3a2c6f3dcf3b329b10751"},
			auth: keyless(testIssuer, "https://github.com/sigstore/sigstore-js/.github/workflows/evil.yml@refs/heads/main", nil),
			want: "expected SAN value"},
		{name: "npm provenance, another artifact", bundle: "bundle-provenance.json", root: "public-good.json",
			art:  ArtifactRef{Digest: "sha512:" + strings.Repeat("00", 64)},
			auth: keyless(testIssuer, sigstoreJSWorkflow, nil), want: "the statement's subject is"},
		{name: "npm provenance, a root that is not its own", bundle: "bundle-provenance.json", root: "scaffolding.json",
			art:  ArtifactRef{Digest: "sha512:76176ffa33808b54602c7c35de5c6e9a4deb96066dba6533f50ac234f4f1f4c6b3527515dc17c06fbe2860030f410eee69ea20079bd3a2c6f3dcf3b329b10751"},
			auth: keyless(testIssuer, sigstoreJSWorkflow, nil), want: "from a log the trust store does not know"},
		{name: "DSSE envelope with two signatures", bundle: "dsse-2sigs.sigstore.json", root: "public-good.json",
			art:  ArtifactRef{Digest: "sha512:bbfd372fc9beeb777fe35d05bb10c0c70a9733d366a75fed7dd18866c7391de3ee7e88ba74dd47abf3e15c845e547fcf0e5c3da80854c751554224d3a6d4e55f"},
			auth: keyless("https://github.com/login/oauth", "brian@dehamer.com", nil), want: "the DSSE envelope has 2 signatures"},
		{name: "message signature, another artifact", bundle: "othername.sigstore.json", root: "scaffolding.json",
			art:  ArtifactRef{Digest: "sha256:" + strings.Repeat("00", 32)},
			auth: keyless("http://oidc.local:8080", "foo!oidc.local", nil), want: "the signature is over another artifact"},
		{name: "key, other content", bundle: "public-key-validity.sigstore.json", root: "public-key-validity.json",
			art: ArtifactRef{Data: strings.NewReader("other content")}, auth: keyAuth, want: "the signature"},
		{name: "key, no timestamp authority trusted", bundle: "public-key-validity.sigstore.json", root: "public-good.json",
			art: ArtifactRef{Data: strings.NewReader("test content")}, auth: keyAuth, want: "no verified signing time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(WithTrustedRootFiles(filepath.Join("testdata", "sigstore-go", tt.root)))
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.VerifyBlobBundle(context.Background(), fixture(t, tt.bundle), tt.art, tt.auth)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyBlobBundle: %v", err)
			}
			if got.Kind != KindBundle || got.Authority != tt.auth.Name {
				t.Errorf("satisfier %+v", got)
			}
			if tt.auth.Keyless != nil && (got.Issuer != tt.auth.Keyless.Issuer || got.Subject != tt.auth.Keyless.Subject || !got.SignedAt.Equal(tt.wantSigned)) {
				t.Errorf("satisfier %+v, want signed at %v", got, tt.wantSigned)
			}
			if tt.auth.Key != nil && (got.KeyID == "" || got.SignedAt.IsZero()) {
				t.Errorf("satisfier %+v, want the key and the TSA time", got)
			}
			if tt.art.Digest != "" && got.Digest != tt.art.Digest {
				t.Errorf("digest %s, want %s", got.Digest, tt.art.Digest)
			}
		})
	}
}

// TestVerifyBlobBundle checks blob bundles made offline: message
// signatures and statements, by key and keyless, given the blob or its
// digest.
func TestVerifyBlobBundle(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	blob := []byte("hello, sealgate\n")
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])

	cert, key := ts.leaf(t, ts.defaultLeaf())
	sig := signECDSA(t, key, blob)
	e := ts.logEntry(t, "hashedrekord", blob, certPEM(t, cert), sig, ts.now)
	keyless := messageBundle(t, cert, blob, sig, bundleOpts{entry: ts.proto(t, e, "hashedrekord", true)})

	k := ecKey(t)
	keySig := signECDSA(t, k, blob)
	keyBundle := messageBundle(t, nil, blob, keySig, bundleOpts{key: k.Public()})
	keyAuth := keyAuthority(t, "keys/blob.pub", k.Public())

	st := statementJSON(t, "https://example.com/predicate/v1", digest, map[string]any{"a": 1})
	env, stSig := dsseSign(t, k, st)
	_ = env
	stBundle := dsseBundle(t, nil, st, stSig, bundleOpts{key: k.Public()})

	tests := []struct {
		name   string
		bundle []byte
		art    ArtifactRef
		auth   *policy.Authority
		want   string
	}{
		{"keyless message, data", keyless, ArtifactRef{Data: bytes.NewReader(blob)}, keylessAuthority(nil), ""},
		{"keyless message, digest", keyless, ArtifactRef{Digest: digest}, keylessAuthority(nil), ""},
		{"key message, data", keyBundle, ArtifactRef{Data: bytes.NewReader(blob)}, keyAuth, ""},
		{"key statement, data", stBundle, ArtifactRef{Data: bytes.NewReader(blob)}, keyAuth, ""},
		{"key statement, digest", stBundle, ArtifactRef{Digest: digest}, keyAuth, ""},
		{"keyless message, other data", keyless, ArtifactRef{Data: strings.NewReader("other")}, keylessAuthority(nil), "the signature"},
		{"key message, wrong key", keyBundle, ArtifactRef{Digest: digest}, keyAuthority(t, "keys/other.pub", ecKey(t).Public()), "the signature does not verify"},
		{"key statement, other data", stBundle, ArtifactRef{Data: strings.NewReader("other")}, keyAuth, "the statement's subject is"},
		{"keyless message, wrong identity", keyless, ArtifactRef{Digest: digest}, keylessAuthority(func(k *policy.KeylessAuthority) { k.Subject = "x" }), "expected SAN value"},
		{"no artifact", keyBundle, ArtifactRef{}, keyAuth, "give the artifact's data or its digest"},
		{"bad digest", keyBundle, ArtifactRef{Digest: "sha256:abc"}, keyAuth, "is not sha256:<64 hex>"},
		{"nil authority", keyBundle, ArtifactRef{Digest: digest}, nil, "no authority given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.VerifyBlobBundle(context.Background(), tt.bundle, tt.art, tt.auth)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != digest {
				t.Errorf("digest %q, want %q", got.Digest, digest)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.VerifyBlobBundle(ctx, keyBundle, ArtifactRef{Digest: digest}, keyAuth); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}
