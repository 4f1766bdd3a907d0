package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	rekordsse "github.com/sigstore/rekor/pkg/types/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

const slsaV1 = "https://slsa.dev/provenance/v1"

// provenance is a SLSA v1 predicate for conditions to look at.
var provenance = map[string]any{
	"buildDefinition": map[string]any{
		"buildType":          "https://example.com/build/v1",
		"externalParameters": map[string]any{"ref": "refs/tags/v1.0.0", "jobs": 3},
	},
	"runDetails": map[string]any{"builder": map[string]any{"id": "https://github.com/actions/runner"}},
}

// attestationRequirement parses a policy holding one attestation entry,
// so that its conditions are compiled by the policy package as in the
// daemon. extra is YAML added under the keyless identity.
func attestationRequirement(t testing.TB, ts *testSigstore, predicateType string, conditions ...string) *policy.Attestation {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "trustedRoot: %s\nrules:\n  - name: app\n    images: [\"127.0.0.1:5000/app@*\"]\n    attestations:\n", ts.rootFile)
	fmt.Fprintf(&b, "      - predicateType: %s\n        authorities:\n          - keyless: {issuer: %q, subject: %q}\n", predicateType, testIssuer, testSubject)
	if len(conditions) > 0 {
		b.WriteString("        conditions:\n")
		for _, c := range conditions {
			fmt.Fprintf(&b, "          - %q\n", c)
		}
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	pol, err := policy.Parse(path, []byte(b.String()))
	if err != nil {
		t.Fatalf("policy: %v\n%s", err, b.String())
	}
	return pol.Rules[0].Attestations[0]
}

// TestAttestations checks keyless attestations as cosign's .att layers
// and as bundles: the right type, subject and conditions allow; another
// type, another subject, a false condition, a condition that fails and a
// tampered statement do not, each with its own reason.
func TestAttestations(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	const goodCond = `predicate.buildDefinition.buildType == "https://example.com/build/v1" && predicate.buildDefinition.externalParameters.jobs > 2`
	cases := []struct {
		name          string
		predicateType string
		digest        string
		conditions    []string
		tamper        bool
		want          string // "" allowed
	}{
		{name: "right type and subject", predicateType: slsaV1, digest: testDigest},
		{name: "conditions hold", predicateType: slsaV1, digest: testDigest, conditions: []string{goodCond, `predicateType == "` + slsaV1 + `"`, `subject.exists(s, s.digest.sha256 != "")`}},
		{name: "wrong predicate type", predicateType: "https://slsa.dev/provenance/v0.2", digest: testDigest,
			want: "no attestation of type https://slsa.dev/provenance/v1 found (found other types: https://slsa.dev/provenance/v0.2)"},
		{name: "subject of another digest", predicateType: slsaV1, digest: siblingDigest,
			want: "the statement's subject is " + siblingDigest + ", not " + testDigest},
		{name: "condition false", predicateType: slsaV1, digest: testDigest, conditions: []string{goodCond, `predicate.runDetails.builder.id == "https://evil.example/runner"`},
			want: `condition is false: "predicate.runDetails.builder.id == \"https://evil.example/runner\"" (policy line`},
		{name: "condition error", predicateType: slsaV1, digest: testDigest, conditions: []string{`predicate.buildDefinition.missing == "x"`},
			want: "condition not evaluated: condition"},
		{name: "tampered statement", predicateType: slsaV1, digest: testDigest, tamper: true,
			want: "the transparency-log entry is about another payload"},
	}
	for _, form := range []string{"att", "bundle"} {
		for _, c := range cases {
			t.Run(form+"/"+c.name, func(t *testing.T) {
				p := ts.bundleParts(t, ts.defaultLeaf(), c.predicateType, c.digest, provenance)
				if c.tamper {
					p.content = []byte(strings.Replace(string(p.content), "refs/tags/v1.0.0", "refs/tags/v6.6.6", 1))
				}
				req := attestationRequirement(t, ts, slsaV1, c.conditions...)
				var atts []artifact.Attestation
				var bundles []artifact.Bundle
				if form == "att" {
					atts = append(atts, p.attestation(t))
				} else {
					bundles = append(bundles, p.bundle(t, ts, false))
				}
				res := v.VerifyAttestations(context.Background(), Subject{Repository: testRepo, Digest: testDigest}, atts, bundles, req)
				if c.want == "" {
					if !res.Satisfied || len(res.By) != 1 || len(res.Reasons) != 0 {
						t.Fatalf("not allowed: %+v", res)
					}
					by := res.By[0]
					if by.Kind != KindAttestation || by.PredicateType != slsaV1 || by.Subject != testSubject || by.Issuer != testIssuer || by.Digest != testDigest || by.SignedAt.IsZero() {
						t.Errorf("satisfier %+v", by)
					}
					return
				}
				if res.Satisfied {
					t.Fatalf("allowed: %+v", res.By)
				}
				if got := strings.Join(res.Reasons, "\n"); !strings.Contains(got, c.want) {
					t.Fatalf("reasons:\n%s\nwant one containing %q", got, c.want)
				}
			})
		}
	}
}

// TestAttestationsSelectType checks that among several attestations only
// those of the required type count, and that a cosign image-signature
// bundle is not reported as an attestation of another type.
func TestAttestationsSelectType(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	req := attestationRequirement(t, ts, slsaV1)
	sbom := ts.bundleParts(t, ts.defaultLeaf(), "https://spdx.dev/Document", testDigest, map[string]any{"spdxVersion": "SPDX-2.3"})
	sig := ts.bundleParts(t, ts.defaultLeaf(), CosignSignPredicateType, testDigest, nil)
	prov := ts.bundleParts(t, ts.defaultLeaf(), slsaV1, testDigest, provenance)
	subject := Subject{Repository: testRepo, Digest: testDigest}
	res := v.VerifyAttestations(context.Background(), subject, []artifact.Attestation{sbom.attestation(t)}, []artifact.Bundle{sig.bundle(t, ts, false)}, req)
	if res.Satisfied || strings.Join(res.Reasons, "|") != "no attestation of type "+slsaV1+" found (found other types: https://spdx.dev/Document)" {
		t.Fatalf("without provenance: %+v", res)
	}
	res = v.VerifyAttestations(context.Background(), subject, []artifact.Attestation{sbom.attestation(t)}, []artifact.Bundle{sig.bundle(t, ts, false), prov.bundle(t, ts, false)}, req)
	if !res.Satisfied || len(res.By) != 1 || res.By[0].PredicateType != slsaV1 {
		t.Fatalf("with provenance: %+v", res)
	}
}

// TestKeyAttestations checks attestations signed with a key, as cosign
// attest --key --tlog-upload=false writes them (no log entry): in a .att
// layer and in a bundle with a public key hint.
func TestKeyAttestations(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := keyAuthority(t, "keys/release.pub", key.Public())
	req := &policy.Attestation{PredicateType: slsaV1, Authorities: []*policy.Authority{auth}}
	st := statementJSON(t, slsaV1, testDigest, provenance)
	subject := Subject{Repository: testRepo, Digest: testDigest}
	for _, tc := range []struct {
		name   string
		signer *ecdsa.PrivateKey
		ok     bool
	}{{"right key", key, true}, {"another key", other, false}} {
		env, sig := dsseSign(t, tc.signer, st)
		att := artifact.Attestation{Envelope: env, Origin: "att"}
		b := artifact.Bundle{JSON: dsseBundle(t, nil, st, sig, bundleOpts{key: tc.signer.Public()}), Origin: "bundle"}
		for form, res := range map[string]Result{
			"att":    v.VerifyAttestations(context.Background(), subject, []artifact.Attestation{att}, nil, req),
			"bundle": v.VerifyAttestations(context.Background(), subject, nil, []artifact.Bundle{b}, req),
		} {
			if res.Satisfied != tc.ok {
				t.Errorf("%s/%s: Satisfied = %v, reasons %q", tc.name, form, res.Satisfied, res.Reasons)
			}
			if tc.ok && (res.By[0].KeyID != keyIDOf(t, key.Public()) || !res.By[0].SignedAt.IsZero()) {
				t.Errorf("%s/%s: satisfier %+v", tc.name, form, res.By[0])
			}
		}
	}
}

// TestAttestationLogged checks a key-signed .att with a Rekor entry that
// the authority requires, against the authority's own rekorKey.
func TestAttestationLogged(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	st := statementJSON(t, slsaV1, testDigest, provenance)
	env, sig := dsseSign(t, key, st)
	e := ts.logEntry(t, rekordsse.KIND, env, pemKey, sig, ts.now)
	att := artifact.Attestation{Envelope: env, RekorBundle: e.annotation(t)}
	auth := keyAuthority(t, "keys/release.pub", key.Public())
	auth.TransparencyLog = policy.TlogRequired
	req := &policy.Attestation{PredicateType: slsaV1, Authorities: []*policy.Authority{auth}}
	res := v.VerifyAttestations(context.Background(), Subject{Repository: testRepo, Digest: testDigest}, []artifact.Attestation{att}, nil, req)
	if !res.Satisfied || !res.By[0].SignedAt.Equal(timeUnix(ts.now)) {
		t.Fatalf("logged attestation: %+v", res)
	}
	att.RekorBundle = nil
	res = v.VerifyAttestations(context.Background(), Subject{Repository: testRepo, Digest: testDigest}, []artifact.Attestation{att}, nil, req)
	if res.Satisfied || !strings.Contains(strings.Join(res.Reasons, "\n"), "no transparency-log entry, and the authority requires one") {
		t.Fatalf("unlogged attestation: %+v", res)
	}
}
