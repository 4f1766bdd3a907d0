package verify

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

// pemFromRoot writes a trusted_root.json's material out as the PEM files
// an operator would have: the Fulcio chain, the Rekor and CT log keys, the
// TSA chain.
func pemFromRoot(t *testing.T, file string) policy.PEMRoots {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	certs := func(cs ...*x509.Certificate) []byte {
		var out []byte
		for _, c := range cs {
			if c != nil {
				out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
			}
		}
		return out
	}
	key := func(l *root.TransparencyLog) policy.PEMMaterial {
		der, err := x509.MarshalPKIXPublicKey(l.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return policy.PEMMaterial{File: "log.pub", PEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), ValidFrom: l.ValidityPeriodStart, ValidUntil: l.ValidityPeriodEnd}
	}
	var r policy.PEMRoots
	for _, ca := range tr.FulcioCertificateAuthorities() {
		f := ca.(*root.FulcioCertificateAuthority)
		r.Fulcio = append(r.Fulcio, policy.PEMMaterial{File: "fulcio.pem", PEM: certs(append(f.Intermediates, f.Root)...), ValidFrom: f.ValidityPeriodStart, ValidUntil: f.ValidityPeriodEnd})
	}
	for _, l := range tr.RekorLogs() {
		r.Rekor = append(r.Rekor, key(l))
	}
	for _, l := range tr.CTLogs() {
		r.CTLogs = append(r.CTLogs, key(l))
	}
	for _, a := range tr.TimestampingAuthorities() {
		s := a.(*root.SigstoreTimestampingAuthority)
		r.TSA = append(r.TSA, policy.PEMMaterial{File: "tsa.pem", PEM: certs(append(append([]*x509.Certificate{s.Leaf}, s.Intermediates...), s.Root)...), ValidFrom: s.ValidityPeriodStart, ValidUntil: s.ValidityPeriodEnd})
	}
	if len(r.Fulcio) == 0 || len(r.Rekor) == 0 || len(r.CTLogs) == 0 || len(r.TSA) == 0 {
		t.Fatalf("the test root lacks some material: %+v", r)
	}
	return r
}

// TestPEMRootsAsTrustedRoot: the same trust given as PEM files decides
// every keyless case exactly as the trusted_root.json does (the right
// identity allowed, each wrong shape denied, a missing SCT denied, TSA
// timestamps honoured).
func TestPEMRootsAsTrustedRoot(t *testing.T) {
	ts := newTestSigstore(t)
	vJSON := ts.verifier(t)
	// The PEM files written out and named by a policy, as an operator
	// would: trustedRoot as a mapping.
	direct := pemFromRoot(t, ts.rootFile)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return name
	}
	text := fmt.Sprintf("trustedRoot:\n  fulcio: [%s]\n  rekor: [%s]\n  ctlogs: [%s]\n  tsa: [%s]\nrules:\n  - name: app\n    images: [\"**\"]\n    signatures:\n      authorities:\n        - keyless: {issuer: i, subject: s}\n",
		write("fulcio.pem", direct.Fulcio[0].PEM), write("rekor.pub", direct.Rekor[0].PEM), write("ctfe.pub", direct.CTLogs[0].PEM), write("tsa.pem", direct.TSA[0].PEM))
	pol, err := policy.Parse(filepath.Join(dir, "policy.yaml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if pol.PEMRoots == nil || len(pol.PEMRoots.Fulcio) != 1 || len(pol.PEMRoots.CTLogs) != 1 {
		t.Fatalf("PEM roots %+v", pol.PEMRoots)
	}
	vPEM, err := New(WithPEMRoots(*pol.PEMRoots))
	if err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for _, form := range []string{"classic", "bundle"} {
		for _, c := range keylessCases(t, ts) {
			if c.noCT {
				continue
			}
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
				subj := Subject{Repository: testRepo, Digest: testDigest}
				a := vJSON.VerifySignaturesAndBundles(context.Background(), subj, sigs, bundles, req)
				b := vPEM.VerifySignaturesAndBundles(context.Background(), subj, sigs, bundles, req)
				if a.Satisfied != b.Satisfied {
					t.Fatalf("trusted_root.json: %v %q; PEM files: %v %q", a.Satisfied, a.Reasons, b.Satisfied, b.Reasons)
				}
				if a.Satisfied {
					allowed++
					if len(a.By) != 1 || len(b.By) != 1 || !a.By[0].SignedAt.Equal(b.By[0].SignedAt) {
						t.Errorf("signing time differs: %+v vs %+v", a.By, b.By)
					}
				}
			})
		}
	}
	if allowed == 0 {
		t.Fatal("no case was allowed: the comparison proved nothing")
	}
	// A validity window is honoured: a Rekor key trusted only until long
	// before the signature does not vouch for its entry.
	expired := direct
	expired.Rekor = []policy.PEMMaterial{direct.Rekor[0]}
	expired.Rekor[0].ValidFrom, expired.Rekor[0].ValidUntil = time.Unix(1, 0), time.Unix(2, 0)
	vOld, err := New(WithPEMRoots(expired))
	if err != nil {
		t.Fatal(err)
	}
	p := ts.classicParts(t, ts.defaultLeaf(), testDigest)
	req := &policy.Signatures{Authorities: []*policy.Authority{keylessAuthority(nil)}}
	if res := vOld.VerifySignaturesAndBundles(context.Background(), Subject{Repository: testRepo, Digest: testDigest}, []artifact.Signature{p.classic(t, false)}, nil, req); res.Satisfied {
		t.Error("a Rekor key outside its validity window vouched for an entry")
	}

	for _, bad := range []policy.PEMRoots{
		{Fulcio: []policy.PEMMaterial{{File: "x.pem", PEM: []byte("not pem")}}},
		{Rekor: []policy.PEMMaterial{{File: "r.pub", PEM: []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")}}},
	} {
		if _, err := New(WithPEMRoots(bad)); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}
