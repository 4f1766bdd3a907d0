package plugin_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
)

// caCase is one image signed with a certificate, decided under a
// certificate authority (the operator's own CA).
type caCase struct {
	name string
	// fulcio: the certificate is from the trusted root's Fulcio CA, not
	// the operator's CA.
	fulcio bool
	// rekor and tsa: the signature carries a Rekor entry, a TSA timestamp.
	rekor, tsa bool
	// expired: the certificate expired before the test ran.
	expired bool
	// authority is the certificate authority's extra keys.
	authority string
	// want is a fragment of the denial; "" means allowed.
	want string
	// clockBound: allowed on the certificate's validity now, so the
	// verdict carries its expiry and is never kept for offline use.
	clockBound bool
}

const caSubject = "release@example.com"

var caCases = []caCase{
	{name: "tsa", tsa: true},
	{name: "rekor", rekor: true},
	{name: "no-timestamp", want: "no verified signing time: the signature has neither a TSA timestamp"},
	{name: "no-timestamp-opted-in", authority: "signingTime: verificationTime", clockBound: true},
	{name: "tsa-opted-in", tsa: true, authority: "signingTime: verificationTime"},
	{name: "expired-opted-in", expired: true, authority: "signingTime: verificationTime", want: "or is not valid now"},
	{name: "wrong-subject", tsa: true, authority: "subject: other@example.com", want: "no SAN of the certificate (release@example.com) matches subject other@example.com"},
	{name: "subject-regexp", tsa: true, authority: `subjectRegExp: '^release@example\.com$'`},
	{name: "issuer-missing", tsa: true, authority: "issuer: https://issuer.example", want: "the certificate has no OIDC issuer extension"},
	{name: "issuer-regexp-matching-empty", tsa: true, authority: "issuerRegExp: '.*'"},
	{name: "fulcio-certificate", fulcio: true, tsa: true, want: "does not chain to the authority's CA"},
	{name: "log-required-none", tsa: true, authority: "LOG", want: "no transparency-log entry, and the authority requires one"},
}

// TestCertificateAuthorityThroughNRI decides, through NRI's runtime side
// and a registry on 127.0.0.1, on images signed with certificates from an
// operator's own CA (no Fulcio issuer extension, no SCT, mostly no Rekor
// entry), in cosign's classic scheme and as bundles: a TSA timestamp or a
// log entry gives the signing time; without either the signature is
// denied unless the authority opts in to the certificate's validity now,
// and such a verdict is never stored for offline use.
func TestCertificateAuthorityThroughNRI(t *testing.T) {
	dir := t.TempDir()
	sg, err := testenv.StartSigstore(dir)
	if err != nil {
		t.Fatal(err)
	}
	own, err := testenv.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca-root.pem"), own.Root)
	writePEM(t, filepath.Join(dir, "ca-intermediate.pem"), own.Cert)
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: true})

	var b strings.Builder
	fmt.Fprintf(&b, "default: deny\ntrustedRoot: %s\nrules:\n", sg.RootFile)
	digests := map[string]name.Digest{}
	seed := int64(5000)
	for _, form := range keylessForms {
		for _, c := range caCases {
			seed++
			img, err := testenv.RandomImage(seed)
			if err != nil {
				t.Fatal(err)
			}
			d, err := reg.Push(img, form+"/"+c.name+":v1")
			if err != nil {
				t.Fatal(err)
			}
			digests[form+"/"+c.name] = d
			signWithCA(t, sg, own, reg, d, form, c)
		}
	}
	for _, c := range caCases {
		extra, tlog := c.authority, ""
		if extra == "LOG" {
			extra, tlog = "", "\n          transparencyLog: required"
		}
		if !strings.HasPrefix(extra, "subject") {
			extra = "subject: " + caSubject + "\n              " + extra
		}
		fmt.Fprintf(&b, "  - name: %s\n    images: [%q]\n    signatures:\n      authorities:\n        - certificate:\n              roots: [ca-root.pem]\n              intermediates: [ca-intermediate.pem]\n              %s%s\n",
			c.name, reg.Addr+"/*/"+c.name, extra, tlog)
	}
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	offline := cache.NewMemory(100)
	n := startNodeEngine(t, polFile, nil, nil, []decision.Option{decision.WithOfflineStore(offline)})

	for _, form := range keylessForms {
		for _, c := range caCases {
			t.Run(form+"/"+c.name, func(t *testing.T) {
				d := digests[form+"/"+c.name]
				err := n.create(t, d, "v1")
				if c.want != "" {
					if err == nil {
						t.Fatal("allowed, want denied")
					}
					if !strings.Contains(err.Error(), c.want) {
						t.Fatalf("denial %q\nwant reason %q", err, c.want)
					}
					return
				}
				if err != nil {
					t.Fatalf("denied, want allowed: %v", err)
				}
				got := n.engine.Decide(context.Background(), decision.Request{Image: d.Context().String() + ":v1", Digest: d.DigestStr(), Namespace: "default"})
				if !got.Allowed || len(got.SatisfiedBy) != 1 {
					t.Fatalf("decision %+v, want allowed by one authority", got)
				}
				by := got.SatisfiedBy[0]
				if by.Subject != caSubject || by.Issuer != "" || !strings.HasPrefix(by.Authority, "certificate ca-root.pem ") {
					t.Errorf("satisfied by %+v, want subject %s, no issuer, the certificate authority", by, caSubject)
				}
				key := cache.Key{Digest: d.DigestStr(), Repository: d.Context().String(), Rule: c.name, PolicyDigest: n.engine.Policy().Digest}
				_, stored := offline.Get(key)
				if c.clockBound {
					if by.ValidUntil.IsZero() || !by.SignedAt.IsZero() {
						t.Errorf("satisfied by %+v, want validUntil (the certificate's expiry) and no signing time", by)
					}
					if stored {
						t.Error("a verdict resting on the certificate's validity now was stored for offline use")
					}
					return
				}
				if by.SignedAt.IsZero() || !by.ValidUntil.IsZero() {
					t.Errorf("satisfied by %+v, want a verified signing time and no validUntil", by)
				}
				if !stored {
					t.Error("the verdict was not stored for offline use")
				}
			})
		}
	}
}

// signWithCA signs d in form as c says (classic .sig layer or bundle)
// and pushes the signature.
func signWithCA(t *testing.T, sg *testenv.Sigstore, own *testenv.CA, reg *testenv.Registry, d name.Digest, form string, c caCase) {
	t.Helper()
	leaf := testenv.LeafOptions{Subject: caSubject, NoSCT: true, CA: own, NotBefore: sg.Now.Add(-time.Minute), NotAfter: sg.Now.Add(24 * time.Hour)}
	if c.fulcio {
		leaf = sg.DefaultLeaf()
		leaf.Subject = caSubject
	}
	if c.expired {
		leaf.NotBefore, leaf.NotAfter = sg.Now.Add(-2*time.Hour), sg.Now.Add(-time.Hour)
	}
	var k testenv.KeylessSignature
	var err error
	if form == "bundle" {
		st, serr := testenv.Statement(testenv.CosignSignPredicateType, d.DigestStr(), nil)
		if serr != nil {
			t.Fatal(serr)
		}
		k, err = sg.SignStatement(leaf, st)
	} else {
		payload, perr := testenv.SimpleSigningPayload(d)
		if perr != nil {
			t.Fatal(perr)
		}
		k, err = sg.SignPayload(leaf, payload)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !c.rekor {
		if err := testenv.WithoutRekorEntry()(sg, &k); err != nil {
			t.Fatal(err)
		}
	}
	if form == "bundle" {
		bundle, err := sg.Bundle(k, c.tsa)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.PushBundle(d, bundle); err != nil {
			t.Fatal(err)
		}
		return
	}
	sig, err := k.Classic(c.tsa)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushCosignSignatures(d, sig); err != nil {
		t.Fatal(err)
	}
}

func writePEM(t *testing.T, path string, cert *x509.Certificate) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
}
