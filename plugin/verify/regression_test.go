package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/rekor/pkg/types/hashedrekord"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

// Regression tests named after the verifier bypasses published against
// cosign, policy-controller and other Sigstore verifiers: each shows the
// bypass does not get through here.

var regressionSubject = Subject{Repository: testRepo, Digest: testDigest}

func denied(t *testing.T, res Result, want string) {
	t.Helper()
	if res.Satisfied {
		t.Fatalf("allowed: %+v", res.By)
	}
	if got := strings.Join(res.Reasons, "\n"); !strings.Contains(got, want) {
		t.Fatalf("reasons:\n%s\nwant one containing %q", got, want)
	}
}

// A genuine, logged Rekor entry for one signature must not vouch for
// another: the entry is compared with the signature, payload and key.
func TestRegressionRekorEntryNotMatchedToSignature(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	req := &policy.Signatures{Authorities: []*policy.Authority{keylessAuthority(nil)}}

	t.Run("classic keyless", func(t *testing.T) {
		p := ts.classicParts(t, ts.defaultLeaf(), testDigest)
		other := ts.classicParts(t, ts.defaultLeaf(), testDigest)
		p.entry = other.entry
		denied(t, v.VerifySignatures(context.Background(), regressionSubject, []artifact.Signature{p.classic(t, true)}, req), "the transparency-log entry is about another signature")
	})
	t.Run("bundle keyless", func(t *testing.T) {
		p := ts.bundleParts(t, ts.defaultLeaf(), CosignSignPredicateType, testDigest, nil)
		other := ts.bundleParts(t, ts.defaultLeaf(), CosignSignPredicateType, testDigest, nil)
		p.entry = other.entry
		denied(t, v.VerifyBundleSignatures(context.Background(), regressionSubject, []artifact.Bundle{p.bundle(t, ts, true)}, req), "the transparency-log entry is about another signature")
	})
	t.Run("entry for the same signature over another payload", func(t *testing.T) {
		// A log entry that names this signature and certificate but
		// another payload digest: only the digest differs.
		// Rekor checks the signature when it logs an entry, so forge the
		// log's side: the same entry with another digest, signed by the
		// trusted log key. Rekor's entry parser itself refuses a
		// hashedrekord whose signature does not cover its digest.
		p := ts.classicParts(t, ts.defaultLeaf(), testDigest)
		e := *p.entry
		real, another := sha256.Sum256(p.content), sha256.Sum256([]byte("another payload"))
		e.body = bytes.Replace(e.body, []byte(hex.EncodeToString(real[:])), []byte(hex.EncodeToString(another[:])), 1)
		e.set = ts.sign(t, e)
		p.entry = &e
		denied(t, v.VerifySignatures(context.Background(), regressionSubject, []artifact.Signature{p.classic(t, false)}, req), "invalid Rekor bundle annotation")
	})
	t.Run("key with rekorKey", func(t *testing.T) {
		k := keys(t)["a"]
		a := keyAuthority(t, "keys/a.pub", k.public())
		a.Key.Rekor = ts.rekorPub()
		sig := sign(t, k, cosignPayload(t, testRepo, testDigest), "o")
		other := sign(t, k, cosignPayload(t, testRepo+":other", testDigest), "o")
		e := ts.logEntry(t, hashedrekord.KIND, other.Payload, pubPEM(t, k.public()), other.Signature, ts.now)
		sig.RekorBundle = e.annotation(t)
		denied(t, v.VerifySignatures(context.Background(), regressionSubject, []artifact.Signature{sig}, &policy.Signatures{Authorities: []*policy.Authority{a}}), "the transparency-log entry is about another signature")
	})
}

// An attestation of another predicate type, however validly signed, must
// not satisfy a requirement: types compare exactly; and an attestation
// must not count as an image signature, nor an image signature as an
// attestation.
func TestRegressionAttestationAcceptedForWrongType(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	req := attestationRequirement(t, ts, slsaV1)
	for _, pt := range []string{"https://slsa.dev/provenance/v0.2", slsaV1 + "/", "HTTPS://SLSA.DEV/provenance/v1", "https://slsa.dev/provenance/v1 ", "https://slsa.dev/provenance/v10", CosignSignPredicateType} {
		t.Run(pt, func(t *testing.T) {
			p := ts.bundleParts(t, ts.defaultLeaf(), pt, testDigest, provenance)
			res := v.VerifyAttestations(context.Background(), regressionSubject, []artifact.Attestation{p.attestation(t)}, []artifact.Bundle{p.bundle(t, ts, false)}, req)
			denied(t, res, "no attestation of type "+slsaV1+" found")
		})
	}
	t.Run("attestation as image signature", func(t *testing.T) {
		p := ts.bundleParts(t, ts.defaultLeaf(), slsaV1, testDigest, provenance)
		res := v.VerifyBundleSignatures(context.Background(), regressionSubject, []artifact.Bundle{p.bundle(t, ts, false)}, &policy.Signatures{Authorities: []*policy.Authority{keylessAuthority(nil)}})
		denied(t, res, "no signatures found")
	})
}

// An identity regular expression must be applied, never skipped because
// the exact value is empty, and a missing identity must not match all.
func TestRegressionIdentityRegexpIgnored(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	p := ts.classicParts(t, ts.defaultLeaf(), testDigest)
	sig := p.classic(t, false)
	tests := []struct {
		name string
		k    policy.KeylessAuthority
		want string // "" allowed
	}{
		{"subject regexp matching", policy.KeylessAuthority{Issuer: testIssuer, SubjectRegExp: regexp.MustCompile(`^https://github\.com/myorg/app/`)}, ""},
		{"subject regexp not matching", policy.KeylessAuthority{Issuer: testIssuer, SubjectRegExp: regexp.MustCompile(`^https://github\.com/evil/`)}, "expected SAN value to match regex"},
		{"issuer regexp not matching", policy.KeylessAuthority{IssuerRegExp: regexp.MustCompile(`^https://accounts\.google\.com$`), Subject: testSubject}, "expected issuer value to match regex"},
		{"anchored regexp against a longer subject", policy.KeylessAuthority{Issuer: testIssuer, SubjectRegExp: regexp.MustCompile(`^https://github\.com/myorg/app$`)}, "expected SAN value to match regex"},
		{"no subject at all", policy.KeylessAuthority{Issuer: testIssuer}, "there must be subject alternative name criteria"},
		{"no issuer at all", policy.KeylessAuthority{Subject: testSubject}, "must specify Issuer criteria"},
		{"empty regexp", policy.KeylessAuthority{Issuer: testIssuer, SubjectRegExp: regexp.MustCompile(``)}, "there must be subject alternative name criteria"},
		{"extension regexp not matching", policy.KeylessAuthority{Issuer: testIssuer, Subject: testSubject, SourceRepositoryURI: policy.StringMatch{RegExp: regexp.MustCompile(`^https://github\.com/evil/`)}}, "certificate source repository URI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := tt.k
			req := &policy.Signatures{Authorities: []*policy.Authority{{Name: "keyless", Keyless: &k}}}
			res := v.VerifySignatures(context.Background(), regressionSubject, []artifact.Signature{sig}, req)
			if tt.want == "" {
				if !res.Satisfied {
					t.Fatalf("denied: %q", res.Reasons)
				}
				return
			}
			denied(t, res, tt.want)
		})
	}
}

// A signed statement counts only for the digest its subject names, read
// the way the signer's tools read it.
func TestRegressionDSSESubjectNotMatched(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	key := ecKey(t)
	auth := keyAuthority(t, "keys/release.pub", key.Public())
	hexOf := func(d string) string { return strings.TrimPrefix(d, "sha256:") }
	statements := []struct {
		name, json, want string
	}{
		{"another digest", fmt.Sprintf(`{"_type":%q,"subject":[{"digest":{"sha256":%q}}],"predicateType":%q}`, StatementTypeV1, hexOf(siblingDigest), slsaV1), "the statement's subject is " + siblingDigest},
		{"several subjects, none the image", fmt.Sprintf(`{"_type":%q,"subject":[{"digest":{"sha256":%q}},{"name":%q,"digest":{"sha512":%q}}],"predicateType":%q}`, StatementTypeV1, hexOf(siblingDigest), testRepo, strings.Repeat("ab", 64), slsaV1), "the statement's subject is"},
		{"upper-case hex", fmt.Sprintf(`{"_type":%q,"subject":[{"digest":{"sha256":%q}}],"predicateType":%q}`, StatementTypeV1, strings.ToUpper(hexOf(testDigest)), slsaV1), "the statement's subject is"},
		{"algorithm in upper case", fmt.Sprintf(`{"_type":%q,"subject":[{"digest":{"SHA256":%q}}],"predicateType":%q}`, StatementTypeV1, hexOf(testDigest), slsaV1), "the statement's subject is"},
		{"name only", fmt.Sprintf(`{"_type":%q,"subject":[{"name":%q,"digest":{}}],"predicateType":%q}`, StatementTypeV1, testRepo+"@"+testDigest, slsaV1), "the statement's subject is no digest"},
		{"duplicate subject key", fmt.Sprintf(`{"_type":%q,"subject":[{"digest":{"sha256":%q}}],"subject":[{"digest":{"sha256":%q}}],"predicateType":%q}`, StatementTypeV1, hexOf(siblingDigest), hexOf(testDigest), slsaV1), `duplicate key "subject"`},
		{"duplicate digest key", fmt.Sprintf(`{"_type":%q,"subject":[{"digest":{"sha256":%q,"sha256":%q}}],"predicateType":%q}`, StatementTypeV1, hexOf(siblingDigest), hexOf(testDigest), slsaV1), `duplicate key "sha256"`},
		{"case variant of subject", fmt.Sprintf(`{"_type":%q,"Subject":[{"digest":{"sha256":%q}}],"subject":[{"digest":{"sha256":%q}}],"predicateType":%q}`, StatementTypeV1, hexOf(testDigest), hexOf(siblingDigest), slsaV1), `unknown key "Subject"`},
	}
	for _, st := range statements {
		t.Run(st.name, func(t *testing.T) {
			env, sig := dsseSign(t, key, []byte(st.json))
			req := &policy.Attestation{PredicateType: slsaV1, Authorities: []*policy.Authority{auth}}
			res := v.VerifyAttestations(context.Background(), regressionSubject, []artifact.Attestation{{Envelope: env}}, []artifact.Bundle{{JSON: dsseBundle(t, nil, []byte(st.json), sig, bundleOpts{key: key.Public()})}}, req)
			denied(t, res, st.want)
			if n := strings.Count(strings.Join(res.Reasons, "\n"), st.want); n != 2 {
				t.Errorf("want the reason for both the .att and the bundle, got %d: %q", n, res.Reasons)
			}
		})
	}
}

// Inputs past the size limits are refused before they are parsed.
func TestRegressionOversizedBundle(t *testing.T) {
	pad := strings.Repeat(" ", MaxBundleSize)
	big := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"` + pad + `}`)
	if _, err := parseBundle(big); !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), "exceeds the 1048576 byte limit") {
		t.Errorf("oversized bundle: %v", err)
	}
	v := newVerifier(t)
	res := v.VerifyBundleSignatures(context.Background(), regressionSubject, []artifact.Bundle{{JSON: big}}, &policy.Signatures{Authorities: []*policy.Authority{keylessAuthority(nil)}})
	denied(t, res, "exceeds the 1048576 byte limit")
	if _, err := ParseStatement([]byte(`{"_type":"` + StatementTypeV1 + `"` + pad + `}`)); !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), "byte limit") {
		t.Errorf("oversized statement: %v", err)
	}
	if _, err := ParseEnvelope([]byte(`{"payload":""` + pad + `}`)); !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), "byte limit") {
		t.Errorf("oversized envelope: %v", err)
	}
	if _, err := parseRekorBundle([]byte(`{` + strings.Repeat(" ", MaxPayloadSize) + `}`)); err == nil || !strings.Contains(err.Error(), "byte limit") {
		t.Errorf("oversized Rekor bundle: %v", err)
	}
	if _, err := VerifyBlobBundleForTest(big); !errors.Is(err, ErrBundle) {
		t.Errorf("oversized blob bundle: %v", err)
	}
}

// VerifyBlobBundleForTest runs an oversized blob bundle through
// VerifyBlobBundle.
func VerifyBlobBundleForTest(b []byte) (Satisfier, error) {
	v, _ := New()
	return v.VerifyBlobBundle(context.Background(), b, ArtifactRef{Digest: testDigest}, keylessAuthority(nil))
}

// Counts are bounded: log entries, timestamps, subjects, digests, envelope
// signatures, and the signatures one decision examines.
func TestRegressionTooManyEntries(t *testing.T) {
	ts := newTestSigstore(t)
	p := ts.bundleParts(t, ts.defaultLeaf(), CosignSignPredicateType, testDigest, nil)
	entry := ts.proto(t, *p.entry, "dsse", true)
	pb := bundleSkeleton(t, p.cert, bundleOpts{entry: entry})
	for range maxBundleTlogEntries {
		pb.VerificationMaterial.TlogEntries = append(pb.VerificationMaterial.TlogEntries, entry)
	}
	pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
		Payload: p.content, PayloadType: InTotoPayloadType, Signatures: []*protodsse.Signature{{Sig: p.sig}},
	}}
	b, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseBundle(b); err == nil || !strings.Contains(err.Error(), "transparency-log entries, more than 8") {
		t.Errorf("%d log entries: %v", maxBundleTlogEntries+1, err)
	}

	subjects := make([]string, maxStatementSubjects+1)
	for i := range subjects {
		subjects[i] = fmt.Sprintf(`{"digest":{"sha256":"%064x"}}`, i)
	}
	st := `{"_type":"` + StatementTypeV1 + `","predicateType":"x","subject":[` + strings.Join(subjects, ",") + `]}`
	if _, err := ParseStatement([]byte(st)); err == nil || !strings.Contains(err.Error(), "1025 subjects exceeds the limit of 1024") {
		t.Errorf("too many subjects: %v", err)
	}
	digests := make([]string, maxSubjectDigests+1)
	for i := range digests {
		digests[i] = fmt.Sprintf(`"alg%d":"00"`, i)
	}
	st = `{"_type":"` + StatementTypeV1 + `","predicateType":"x","subject":[{"digest":{` + strings.Join(digests, ",") + `}}]}`
	if _, err := ParseStatement([]byte(st)); err == nil || !strings.Contains(err.Error(), "more than 32") {
		t.Errorf("too many digests: %v", err)
	}
	sigs := strings.Repeat(`{"sig":"AA=="},`, maxEnvelopeSignatures+1)
	env := `{"payloadType":"x","payload":"","signatures":[` + strings.TrimSuffix(sigs, ",") + `]}`
	if _, err := ParseEnvelope([]byte(env)); err == nil || !strings.Contains(err.Error(), "9 signatures; want 1 to 8") {
		t.Errorf("too many envelope signatures: %v", err)
	}

	// A registry listing many signatures: only maxSignatures are examined.
	k := keys(t)["b"]
	bad := sign(t, k, cosignPayload(t, testRepo, testDigest), "flood")
	flood := make([]artifact.Signature, maxSignatures+10)
	for i := range flood {
		flood[i] = bad
	}
	v := newVerifier(t)
	res := v.VerifySignatures(context.Background(), regressionSubject, flood, &policy.Signatures{Authorities: []*policy.Authority{keyAuthority(t, "keys/a.pub", keys(t)["a"].public())}})
	denied(t, res, fmt.Sprintf("10 more signatures not checked (at most %d are examined per decision)", maxSignatures))
	if len(res.Reasons) != maxSignatures+2 {
		t.Errorf("%d reasons, want %d", len(res.Reasons), maxSignatures+2)
	}
}

// A signature that verifies over content that does not parse must never
// count (a parse error swallowed as success).
func TestRegressionUnparseablePayloadReportedAsSuccess(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	k := keys(t)["a"]
	auth := keyAuthority(t, "keys/a.pub", k.public())
	sigReq := &policy.Signatures{Authorities: []*policy.Authority{auth}}
	for _, payload := range []string{"", "null", "{}", "not json", `{"critical":{}}`, `{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"` + testDigest + `"},"type":"cosign container image signature"}}}`} {
		sig := sign(t, k, []byte(payload), "o")
		res := v.VerifySignatures(context.Background(), regressionSubject, []artifact.Signature{sig}, sigReq)
		if res.Satisfied {
			t.Errorf("payload %q: allowed", payload)
		}
	}
	ec := ecKey(t)
	ecAuth := keyAuthority(t, "keys/ec.pub", ec.Public())
	attReq := &policy.Attestation{PredicateType: slsaV1, Authorities: []*policy.Authority{ecAuth}}
	for _, st := range []struct{ json, want string }{
		{"not json", "invalid in-toto statement: invalid JSON"},
		{`{"_type":"https://example.com/Statement/v1","subject":[{"digest":{"sha256":"` + strings.TrimPrefix(testDigest, "sha256:") + `"}}],"predicateType":"` + slsaV1 + `"}`, "is not an in-toto statement type"},
		{`{"_type":"` + StatementTypeV1 + `","subject":[{"digest":{"sha256":"` + strings.TrimPrefix(testDigest, "sha256:") + `"}}],"predicateType":"` + slsaV1 + `","extra":1}`, `unknown key "extra" in statement`},
		{`{"_type":"` + StatementTypeV1 + `","subject":[],"predicateType":"` + slsaV1 + `"}`, "subject is empty"},
	} {
		env, sig := dsseSign(t, ec, []byte(st.json))
		res := v.VerifyAttestations(context.Background(), regressionSubject, []artifact.Attestation{{Envelope: env}}, []artifact.Bundle{{JSON: dsseBundle(t, nil, []byte(st.json), sig, bundleOpts{key: ec.Public()})}}, attReq)
		denied(t, res, st.want)
	}
	// A DSSE envelope whose payload type is not in-toto.
	var env map[string]any
	e, _ := dsseSign(t, ec, statementJSON(t, slsaV1, testDigest, nil))
	if err := json.Unmarshal(e, &env); err != nil {
		t.Fatal(err)
	}
	env["payloadType"] = "application/json"
	e, _ = json.Marshal(env)
	denied(t, v.VerifyAttestations(context.Background(), regressionSubject, []artifact.Attestation{{Envelope: e}}, nil, attReq), `DSSE payload type "application/json" is not application/vnd.in-toto+json`)
}
