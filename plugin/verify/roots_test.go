package verify

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

func TestNewTrustedRoots(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[{"bogus":1}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	notJSON := filepath.Join(dir, "root.txt")
	if err := os.WriteFile(notJSON, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.json")
	if err := os.WriteFile(huge, make([]byte, maxTrustedRootSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join("testdata", "sigstore-go", "public-good.json")
	tests := []struct {
		name string
		opts []Option
		want string // substring of the error; "" for success
	}{
		{"one root", []Option{WithTrustedRootFiles(good)}, ""},
		{"several roots", []Option{WithTrustedRootFiles(good, filepath.Join("testdata", "sigstore-go", "scaffolding.json"))}, ""},
		{"missing file", []Option{WithTrustedRootFiles(filepath.Join(dir, "missing.json"))}, "trusted root " + filepath.Join(dir, "missing.json") + ": "},
		{"not JSON", []Option{WithTrustedRootFiles(notJSON)}, "trusted root " + notJSON + ": "},
		{"unknown field", []Option{WithTrustedRootFiles(garbage)}, "trusted root " + garbage + ": "},
		{"too large", []Option{WithTrustedRootFiles(huge)}, "trusted root " + huge + ": larger than"},
		{"empty path", []Option{WithTrustedRootFiles("")}, "trusted root: empty path"},
		{"nil material", []Option{WithTrustedMaterial(nil)}, "trusted material: nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts...)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestRootsParsedOnce checks that the trusted root is read when the
// Verifier is built and never again: decisions go on with the file gone,
// and one changed on disk changes nothing until a new Verifier is built.
func TestRootsParsedOnce(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	p := ts.classicParts(t, ts.defaultLeaf(), testDigest)
	req := &policy.Signatures{Authorities: []*policy.Authority{keylessAuthority(nil)}}
	sigs := []artifact.Signature{p.classic(t, false)}
	if res := v.VerifySignatures(context.Background(), regressionSubject, sigs, req); !res.Satisfied {
		t.Fatalf("before: %q", res.Reasons)
	}
	if err := os.WriteFile(ts.rootFile, []byte("not a root any more"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if res := v.VerifySignatures(context.Background(), regressionSubject, sigs, req); !res.Satisfied {
			t.Fatalf("after the file changed: %q", res.Reasons)
		}
	}
	if _, err := New(WithTrustedRootFiles(ts.rootFile)); err == nil {
		t.Fatal("a new Verifier accepted the broken root")
	}
}

// TestTrustedMaterial checks WithTrustedMaterial with sigstore-go's own
// VirtualSigstore, whose certificates carry no SCT (so its CT log, which
// makes SCTs required, is hidden) and the Fulcio extensions of a plain
// email identity.
func TestTrustedMaterial(t *testing.T) {
	ts := newTestSigstore(t)
	v, err := New(WithTrustedMaterial(noCTLogs{ts.vs}))
	if err != nil {
		t.Fatal(err)
	}
	payload := cosignPayload(t, testRepo, testDigest)
	ent, err := ts.vs.Sign("dev@example.com", "https://issuer.example", payload)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := ent.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ent.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ent.TlogEntries()
	if err != nil {
		t.Fatal(err)
	}
	tle := entries[0].TransparencyLogEntry()
	e := rekorEntry{body: tle.CanonicalizedBody, integratedTime: tle.IntegratedTime, logIndex: tle.LogIndex, logID: tle.LogId.KeyId}
	e.set = ts.sign(t, e)
	sig := artifact.Signature{Payload: payload, Signature: sc.Signature(), Certificate: certPEM(t, vc.Certificate()), RekorBundle: e.annotation(t)}
	auth := &policy.Authority{Name: "keyless dev", Keyless: &policy.KeylessAuthority{Issuer: "https://issuer.example", Subject: "dev@example.com"}}
	res := v.VerifySignatures(context.Background(), regressionSubject, []artifact.Signature{sig}, &policy.Signatures{Authorities: []*policy.Authority{auth}})
	if !res.Satisfied || res.By[0].Subject != "dev@example.com" {
		t.Fatalf("VirtualSigstore signature: %+v", res)
	}
}

// noCTLogs hides a trusted material's CT logs.
type noCTLogs struct{ root.TrustedMaterial }

func (noCTLogs) CTLogs() map[string]*root.TransparencyLog { return nil }
