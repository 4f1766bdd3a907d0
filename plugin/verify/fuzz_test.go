package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

// bundleSeeds are real bundles (sigstore-go's fixtures) and bundles made
// by the test Sigstore in every form this package reads.
func bundleSeeds(f *testing.F) [][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "sigstore-go", "*.sigstore.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/sigstore-go: %v", err)
	}
	files = append(files, filepath.Join("testdata", "sigstore-go", "bundle-provenance.json"))
	var seeds [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	ts := newTestSigstore(f)
	p := ts.bundleParts(f, ts.defaultLeaf(), CosignSignPredicateType, testDigest, nil)
	seeds = append(seeds, p.bundle(f, ts, true).JSON)
	for _, version := range []string{"0.1", "0.2"} {
		seeds = append(seeds, dsseBundle(f, p.cert, p.content, p.sig, bundleOpts{version: version, entry: ts.proto(f, *p.entry, "dsse", version != "0.1")}))
	}
	key := ecKey(f)
	seeds = append(seeds, keyImageBundle(f, ts, key, testDigest, false).JSON, messageBundle(f, nil, []byte("blob"), signECDSA(f, key, []byte("blob")), bundleOpts{key: key.Public()}))
	return seeds
}

// FuzzParseBundle feeds bundle documents to the parsing and limits path
// and then to verification (as an image signature, an attestation and a
// blob), which must never panic; whatever parses must respect the limits
// and read, with encoding/json, as the same statement.
func FuzzParseBundle(f *testing.F) {
	for _, s := range bundleSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","mediaType":"x"}`))
	ts := newTestSigstore(f)
	v := ts.verifier(f)
	keyless := keylessAuthority(nil)
	keyAuth := keyAuthority(f, "keys/a.pub", ecKey(f).Public())
	sigReq := &policy.Signatures{Authorities: []*policy.Authority{keyless, keyAuth}}
	attReq := &policy.Attestation{PredicateType: slsaV1, Authorities: []*policy.Authority{keyless, keyAuth}}
	f.Fuzz(func(t *testing.T, data []byte) {
		pb, err := parseBundle(data)
		if err != nil {
			if pb != nil || !(errors.Is(err, ErrBundle) || errors.Is(err, ErrPayload)) {
				t.Fatalf("error %v with %+v, or not wrapping ErrBundle/ErrPayload", err, pb)
			}
		} else {
			if len(data) > MaxBundleSize || len(pb.entries) > maxBundleTlogEntries || pb.stamps > maxBundleTimestamps {
				t.Fatalf("limits passed: %d bytes, %d entries, %d timestamps", len(data), len(pb.entries), pb.stamps)
			}
			if env := pb.b.GetDsseEnvelope(); (env != nil) != (pb.statement != nil) {
				t.Fatalf("DSSE %v but statement %v", env != nil, pb.statement != nil)
			} else if env != nil {
				sameStatement(t, env.GetPayload(), pb.statement)
			}
		}
		subject := Subject{Repository: testRepo, Digest: testDigest}
		b := []artifact.Bundle{{JSON: data}}
		if res := v.VerifyBundleSignatures(context.Background(), subject, b, sigReq); res.Satisfied {
			t.Fatalf("fuzzed bundle satisfied a signature requirement: %+v", res.By)
		}
		if res := v.VerifyAttestations(context.Background(), subject, nil, b, attReq); res.Satisfied {
			t.Fatalf("fuzzed bundle satisfied an attestation requirement: %+v", res.By)
		}
		_, _ = v.VerifyBlobBundle(context.Background(), data, ArtifactRef{Digest: testDigest}, keyless)
	})
}

// FuzzParseStatement feeds DSSE envelopes and in-toto statements to the
// strict parsers (and to .att verification), which must never panic and
// must read whatever they accept as encoding/json does, which is how
// sigstore-go and in-toto tools read statements.
func FuzzParseStatement(f *testing.F) {
	st := statementJSON(f, slsaV1, testDigest, provenance)
	f.Add(st)
	f.Add(statementJSON(f, CosignSignPredicateType, testDigest, nil))
	env, _ := dsseSign(f, ecKey(f), st)
	f.Add(env)
	for _, s := range []string{
		`{"_type":"https://in-toto.io/Statement/v0.1","subject":[{"name":"x","digest":{"sha256":"00"}}],"predicateType":"p","predicate":{"a":[1,2.5,-3e10,true,null]}}`,
		`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"00"}}],"subject":[],"predicateType":"p"}`,
		`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]}`,
		`{"payloadType":"x","payload":"","signatures":[]}`,
		`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"00"}}],"predicateType":"p","predicate":1e400}`,
	} {
		f.Add([]byte(s))
	}
	for _, file := range []string{"bundle-provenance.json", "dsse.sigstore.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "sigstore-go", file))
		if err != nil {
			f.Fatal(err)
		}
		var doc struct {
			DsseEnvelope struct{ Payload string } `json:"dsseEnvelope"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			f.Fatal(err)
		}
		p, err := base64.StdEncoding.DecodeString(doc.DsseEnvelope.Payload)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	v := newVerifier(f)
	req := &policy.Attestation{PredicateType: slsaV1, Authorities: []*policy.Authority{keyAuthority(f, "keys/a.pub", ecKey(f).Public())}}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseStatement(data)
		if err != nil {
			if st != nil || !errors.Is(err, ErrPayload) {
				t.Fatalf("error %v with %+v, or not wrapping ErrPayload", err, st)
			}
		} else {
			sameStatement(t, data, st)
		}
		env, err := ParseEnvelope(data)
		if err != nil {
			if env != nil || !errors.Is(err, ErrPayload) {
				t.Fatalf("error %v with %+v, or not wrapping ErrPayload", err, env)
			}
		} else {
			if n := len(env.Signatures); n < 1 || n > maxEnvelopeSignatures {
				t.Fatalf("%d signatures accepted", n)
			}
			var std struct {
				PayloadType string `json:"payloadType"`
				Payload     string `json:"payload"`
			}
			if err := json.Unmarshal(data, &std); err != nil || std.PayloadType != env.PayloadType || std.Payload != env.Payload {
				t.Fatalf("encoding/json reads %+v (%v), ParseEnvelope %+v", std, err, env)
			}
		}
		res := v.VerifyAttestations(context.Background(), Subject{Repository: testRepo, Digest: testDigest}, []artifact.Attestation{{Envelope: data}}, nil, req)
		if res.Satisfied {
			t.Fatalf("fuzzed envelope satisfied a requirement: %+v", res.By)
		}
	})
}

// sameStatement checks that encoding/json reads st's type, predicate type
// and subjects from data as ParseStatement did.
func sameStatement(t *testing.T, data []byte, st *Statement) {
	t.Helper()
	if st.Type != StatementTypeV1 && st.Type != StatementTypeV01 {
		t.Fatalf("accepted _type %q", st.Type)
	}
	if len(st.Subjects) == 0 || len(st.Subjects) > maxStatementSubjects {
		t.Fatalf("accepted %d subjects", len(st.Subjects))
	}
	var std struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(data, &std); err != nil {
		t.Fatalf("accepted a statement encoding/json rejects: %v", err)
	}
	if std.Type != st.Type || std.PredicateType != st.PredicateType || len(std.Subject) != len(st.Subjects) {
		t.Fatalf("encoding/json reads %q %q %d subjects; ParseStatement %q %q %d", std.Type, std.PredicateType, len(std.Subject), st.Type, st.PredicateType, len(st.Subjects))
	}
	for i, s := range std.Subject {
		if s.Name != st.Subjects[i].Name || len(s.Digest) != len(st.Subjects[i].Digest) {
			t.Fatalf("subject %d: encoding/json %+v, ParseStatement %+v", i, s, st.Subjects[i])
		}
		for alg, h := range s.Digest {
			if st.Subjects[i].Digest[alg] != h {
				t.Fatalf("subject %d digest %s: encoding/json %q, ParseStatement %q", i, alg, h, st.Subjects[i].Digest[alg])
			}
		}
	}
}

// FuzzParseAnnotations feeds cosign's classic annotations (Rekor bundle,
// TSA timestamp, certificate and chain) to their parsers and to
// verification.
func FuzzParseAnnotations(f *testing.F) {
	ts := newTestSigstore(f)
	p := ts.classicParts(f, ts.defaultLeaf(), testDigest)
	sig := p.classic(f, true)
	f.Add(sig.RekorBundle, sig.Timestamp, sig.Certificate, sig.Chain)
	f.Add([]byte(`{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":0,"logID":"00"}}`), []byte(`{"SignedRFC3161Timestamp":"AA=="}`), []byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"), []byte(nil))
	v := ts.verifier(f)
	req := &policy.Signatures{Authorities: []*policy.Authority{keylessAuthority(nil), keyAuthority(f, "keys/a.pub", keys(f)["a"].public())}}
	orig, err := parseRekorBundle(sig.RekorBundle)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rekor, tsr, cert, chain []byte) {
		_, _ = parseRekorBundle(rekor)
		_, _ = parseTimestamp(tsr)
		_, _ = parseCertificate(cert)
		_, _ = parseChain(chain)
		s := sig
		s.RekorBundle, s.Timestamp, s.Certificate, s.Chain = rekor, tsr, cert, chain
		res := v.VerifySignatures(context.Background(), regressionSubject, []artifact.Signature{s}, req)
		for _, by := range res.By {
			if by.Issuer == "" {
				continue // the key authority: the signature alone suffices
			}
			// The keyless authority requires the log entry: it must be the
			// real one, however the annotation is encoded.
			e, err := parseRekorBundle(rekor)
			if err != nil || e.Body() != orig.Body() || e.IntegratedTime() != orig.IntegratedTime() || e.LogIndex() != orig.LogIndex() {
				t.Fatalf("satisfied with another Rekor bundle %q: %+v", rekor, res.By)
			}
		}
	})
}
