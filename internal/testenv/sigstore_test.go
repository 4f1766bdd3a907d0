package testenv_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
	"github.com/sealgate/sealgate/plugin/verify"
)

const testDigest = "sha256:0d84a767ccbceeaf4ecb7404a04eae4358b51c25fa3ea0e8dfab0deaf5cd1946"

// sigstoreGoVerify verifies a bundle for digest with sigstore-go itself,
// as cosign verify does: an SCT, a log entry and its integrated time, and
// the certificate identity.
func sigstoreGoVerify(t *testing.T, rootFile string, b []byte, digest string) error {
	t.Helper()
	tr, err := root.NewTrustedRootFromPath(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := []sgverify.VerifierOption{sgverify.WithTransparencyLog(1), sgverify.WithIntegratedTimestamps(1)}
	if len(tr.CTLogs()) > 0 {
		opts = append(opts, sgverify.WithSignedCertificateTimestamps(1))
	}
	v, err := sgverify.NewVerifier(tr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var bun bundle.Bundle
	if err := bun.UnmarshalJSON(b); err != nil {
		return fmt.Errorf("parse bundle: %w", err)
	}
	id, err := sgverify.NewShortCertificateIdentity(testenv.KeylessIssuer, "", testenv.KeylessSubject, "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := hex.DecodeString(strings.TrimPrefix(digest, "sha256:"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(&bun, sgverify.NewPolicy(sgverify.WithArtifactDigest("sha256", h), sgverify.WithCertificateIdentity(id)))
	return err
}

// TestSigstoreBundle checks the bundles SignBundle makes against
// sigstore-go's own verifier: the right one verifies, each mutation and
// each bad certificate fails.
func TestSigstoreBundle(t *testing.T) {
	s := testenv.NewSigstore(t)
	other, err := testenv.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	noSCT := s.DefaultLeaf()
	noSCT.NoSCT = true
	otherCA := s.DefaultLeaf()
	otherCA.CA = other
	expired := s.DefaultLeaf()
	expired.NotBefore, expired.NotAfter = s.Now.Add(-30*time.Minute), s.Now.Add(-20*time.Minute)
	tests := []struct {
		name      string
		leaf      testenv.LeafOptions
		mutations []testenv.Mutation
		root      string
		want      string // a fragment of sigstore-go's error; "" verified
	}{
		{name: "right", leaf: s.DefaultLeaf(), root: s.RootFile},
		{name: "no SCT, root without CT logs", leaf: noSCT, root: s.NoCTRootFile},
		{name: "no SCT", leaf: noSCT, root: s.RootFile, want: "only able to verify 0 SCT entries"},
		{name: "CA not in the root", leaf: otherCA, root: s.RootFile, want: "leaf certificate verification failed"},
		{name: "expired at signing time", leaf: expired, root: s.RootFile, want: "integrated time outside certificate validity"},
		{name: "no Rekor entry", leaf: s.DefaultLeaf(), mutations: []testenv.Mutation{testenv.WithoutRekorEntry()}, root: s.RootFile, want: "not enough verified log entries"},
		{name: "altered Rekor entry", leaf: s.DefaultLeaf(), mutations: []testenv.Mutation{testenv.AlterRekorEntry()}, root: s.RootFile, want: "not enough verified log entries"},
		{name: "Rekor entry of another signature", leaf: s.DefaultLeaf(), mutations: []testenv.Mutation{testenv.RekorEntryOfAnotherSignature()}, root: s.RootFile, want: "transparency log signature does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := s.SignBundle(tt.leaf, testDigest, tt.mutations...)
			if err != nil {
				t.Fatal(err)
			}
			err = sigstoreGoVerify(t, tt.root, b, testDigest)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("verify: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("verify: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("another digest", func(t *testing.T) {
		b, err := s.SignBundle(s.DefaultLeaf(), testDigest)
		if err != nil {
			t.Fatal(err)
		}
		if err := sigstoreGoVerify(t, s.RootFile, b, "sha256:"+strings.Repeat("ab", 32)); err == nil {
			t.Fatal("a bundle for one digest verified for another")
		}
	})
}

// TestSigstoreStatementAsCosign checks that the statement is the one cosign
// signs for an image: an in-toto v1 statement with one nameless subject.
func TestSigstoreStatementAsCosign(t *testing.T) {
	st, err := testenv.Statement(testenv.CosignSignPredicateType, testDigest, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(st, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]any{"sha256": strings.TrimPrefix(testDigest, "sha256:")}}},
		"predicateType": "https://sigstore.dev/cosign/sign/v1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("statement %s\nwant %v", st, want)
	}
	st, err = testenv.Statement("https://slsa.dev/provenance/v1", testDigest, map[string]any{"buildDefinition": map[string]any{"buildType": "x"}})
	if err != nil || !bytes.Contains(st, []byte(`"buildType"`)) {
		t.Errorf("statement with predicate: %s, %v", st, err)
	}
	if _, err := testenv.Statement("x", "nocolon", nil); err == nil {
		t.Error("a digest without an algorithm was accepted")
	}
}

// TestSigstoreClassic checks the classic layers SignClassic makes with
// sealgate's verifier (sigstore-go has no reader for cosign's classic
// scheme): right identity verified, each mutation denied for its reason.
func TestSigstoreClassic(t *testing.T) {
	s := testenv.NewSigstore(t)
	v, err := verify.New(verify.WithTrustedRootFiles(s.RootFile))
	if err != nil {
		t.Fatal(err)
	}
	const repo = "127.0.0.1:5000/app"
	payload, err := testenv.SimpleSigningPayload(name.MustParseReference(repo + "@" + testDigest).(name.Digest))
	if err != nil {
		t.Fatal(err)
	}
	req := &policy.Signatures{Authorities: []*policy.Authority{{Name: "ci", Keyless: &policy.KeylessAuthority{Issuer: testenv.KeylessIssuer, Subject: testenv.KeylessSubject}}}}
	tests := []struct {
		mutation testenv.Mutation
		want     string // "" verified
	}{
		{nil, ""},
		{testenv.WithoutRekorEntry(), "no transparency-log entry"},
		{testenv.AlterRekorEntry(), "no transparency-log entry verifies"},
		{testenv.RekorEntryOfAnotherSignature(), "about another signature"},
	}
	for _, tt := range tests {
		var muts []testenv.Mutation
		if tt.mutation != nil {
			muts = append(muts, tt.mutation)
		}
		c, err := s.SignClassic(s.DefaultLeaf(), payload, muts...)
		if err != nil {
			t.Fatal(err)
		}
		if tt.want == "" && (len(c.Certificate) == 0 || len(c.Chain) == 0 || len(c.RekorBundle) == 0) {
			t.Fatalf("layer lacks material: %+v", c)
		}
		sig := artifact.Signature{Payload: c.Payload, Signature: c.Signature, Certificate: c.Certificate, Chain: c.Chain, RekorBundle: c.RekorBundle}
		res := v.VerifySignatures(context.Background(), verify.Subject{Repository: repo, Digest: testDigest}, []artifact.Signature{sig}, req)
		switch {
		case tt.want == "" && !res.Satisfied:
			t.Errorf("right signature denied: %q", res.Reasons)
		case tt.want != "" && (res.Satisfied || !strings.Contains(strings.Join(res.Reasons, "\n"), tt.want)):
			t.Errorf("reasons %q, want %q", res.Reasons, tt.want)
		}
	}
	if _, err := s.SignClassic(s.DefaultLeaf(), payload, testenv.WithoutRekorEntry(), testenv.AlterRekorEntry()); err == nil {
		t.Error("altering an absent entry succeeded")
	}
}

// skeleton keeps a manifest's structure and the values that do not vary
// between two signatures: keys, media types, artifact types; digests,
// sizes and annotation values become placeholders, and the annotations
// only keyless signatures have are dropped.
func skeleton(v any, key string) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			if key == "annotations" {
				// A key signature, as the cosign CLI makes offline,
				// has no keyless material.
				switch k {
				case testenv.AnnotationCertificate, testenv.AnnotationChain, testenv.AnnotationBundle, testenv.AnnotationTimestamp:
				default:
					out[k] = "…"
				}
				continue
			}
			out[k] = skeleton(e, k)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = skeleton(e, key)
		}
		return out
	case float64:
		return "N"
	case string:
		if key == "digest" {
			return "sha256:…"
		}
	}
	return v
}

func manifestSkeleton(t *testing.T, raw []byte) any {
	t.Helper()
	var m any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return skeleton(m, "")
}

// TestRegistrySigstoreAsCosign pushes signatures and bundles with the
// Registry helpers and with the real cosign CLI, and compares what each
// wrote: the manifests must have the same shape, and plugin/source must
// read ours back, with the referrers API on and off.
func TestRegistrySigstoreAsCosign(t *testing.T) {
	c := testenv.NewCosign(t)
	key, _, err := c.GenerateKeyPair("k")
	if err != nil {
		t.Fatal(err)
	}
	s := testenv.NewSigstore(t)
	for _, referrers := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrers=%v", referrers), func(t *testing.T) {
			r := testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: referrers})
			push := func(seed int64, repo string) name.Digest {
				img, err := testenv.RandomImage(seed)
				if err != nil {
					t.Fatal(err)
				}
				d, err := r.Push(img, repo+":v1")
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			ours, theirs := push(1, "ours"), push(2, "theirs")
			if err := c.Sign(key, theirs.String()); err != nil {
				t.Fatal(err)
			}
			if err := c.Sign(key, theirs.String(), "--new-bundle-format"); err != nil {
				t.Fatal(err)
			}
			payload, err := testenv.SimpleSigningPayload(ours)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.SignClassic(s.DefaultLeaf(), payload)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.PushCosignSignatures(ours, sig); err != nil {
				t.Fatal(err)
			}
			b, err := s.SignBundle(s.DefaultLeaf(), ours.DigestStr())
			if err != nil {
				t.Fatal(err)
			}
			bref, err := r.PushBundle(ours, b)
			if err != nil {
				t.Fatal(err)
			}

			get := func(ref string) []byte {
				t.Helper()
				parsed, err := name.ParseReference(ref)
				if err != nil {
					t.Fatal(err)
				}
				desc, err := remote.Get(parsed)
				if err != nil {
					t.Fatalf("get %s: %v", ref, err)
				}
				return desc.Manifest
			}
			sigTag := func(d name.Digest) string {
				tag, err := source.SignatureTag(d)
				if err != nil {
					t.Fatal(err)
				}
				return tag.String()
			}
			// The .sig manifests: same shape, but for the keyless
			// annotations.
			if got, want := manifestSkeleton(t, get(sigTag(ours))), manifestSkeleton(t, get(sigTag(theirs))); !reflect.DeepEqual(got, want) {
				t.Errorf(".sig manifest shape\n got %v\nwant %v", got, want)
			}
			// The bundle referrers: same shape.
			theirBundle := referrerOf(t, theirs)
			if got, want := manifestSkeleton(t, get(bref.String())), manifestSkeleton(t, get(theirs.Context().Digest(theirBundle).String())); !reflect.DeepEqual(got, want) {
				t.Errorf("bundle manifest shape\n got %v\nwant %v", got, want)
			}
			if !referrers {
				// The fallback index exists and lists the bundle.
				fb, err := source.ReferrersTag(ours)
				if err != nil {
					t.Fatal(err)
				}
				if idx := get(fb.String()); !bytes.Contains(idx, []byte(bref.DigestStr())) {
					t.Errorf("fallback index %s does not list %s", idx, bref.DigestStr())
				}
			}

			src, err := source.NewRegistry(source.WithHostsDir(filepath.Join(t.TempDir(), "certs.d")))
			if err != nil {
				t.Fatal(err)
			}
			sigs, err := src.Signatures(context.Background(), ours)
			if err != nil || len(sigs) != 1 {
				t.Fatalf("source signatures: %v, %v", sigs, err)
			}
			if g := sigs[0]; !bytes.Equal(g.Payload, sig.Payload) || !bytes.Equal(g.Signature, sig.Signature) || !bytes.Equal(g.Certificate, sig.Certificate) ||
				!bytes.Equal(g.Chain, sig.Chain) || !bytes.Equal(g.RekorBundle, sig.RekorBundle) || g.Timestamp != nil {
				t.Errorf("source read back %+v\nwant %+v", g, sig)
			}
			bundles, err := src.Bundles(context.Background(), ours)
			if err != nil || len(bundles) != 1 {
				t.Fatalf("source bundles: %v, %v", bundles, err)
			}
			if g := bundles[0]; !bytes.Equal(g.JSON, b) || g.MediaType != testenv.BundleMediaTypeV03 || g.ArtifactType != testenv.BundleMediaTypeV03 || g.Attached != ours.DigestStr() {
				t.Errorf("source read back bundle %+v", g)
			}
		})
	}
}

// referrerOf returns the digest of d's one referrer, through the
// referrers API or the fallback tag.
func referrerOf(t *testing.T, d name.Digest) string {
	t.Helper()
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("%s has %d referrers, want 1", d, len(m.Manifests))
	}
	return m.Manifests[0].Digest.String()
}

func TestRegistrySigstoreOtherRegistry(t *testing.T) {
	r := testenv.NewRegistry(t, testenv.RegistryOptions{})
	d, err := name.NewDigest("example.invalid/app@" + testDigest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.PushCosignSignatures(d); err == nil || !strings.Contains(err.Error(), "not in registry") {
		t.Errorf("PushCosignSignatures: %v", err)
	}
	if _, err := r.PushBundle(d, []byte("{}")); err == nil || !strings.Contains(err.Error(), "not in registry") {
		t.Errorf("PushBundle: %v", err)
	}
}

// TestSigstoreLogEntry checks the entry helpers: SignEntry covers the
// fields, Annotation and TransparencyLogEntry carry them.
func TestSigstoreLogEntry(t *testing.T) {
	s := testenv.NewSigstore(t)
	if _, err := s.LogEntry("intoto", nil, nil, nil, s.Now); err == nil {
		t.Error("unknown kind accepted")
	}
	k, err := s.SignPayload(s.DefaultLeaf(), []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	e := *k.Entry
	if e.IntegratedTime != s.Now.Unix() || !bytes.Equal(e.LogID, s.RekorLogID()) || len(e.SET) == 0 {
		t.Fatalf("entry %+v", e)
	}
	before := append([]byte(nil), e.SET...)
	e.IntegratedTime++
	if err := s.SignEntry(&e); err != nil || bytes.Equal(e.SET, before) {
		t.Errorf("SignEntry did not sign anew: %v", err)
	}
	ann, err := e.Annotation()
	if err != nil || !bytes.Contains(ann, []byte(fmt.Sprintf(`"integratedTime":%d`, e.IntegratedTime))) {
		t.Errorf("annotation %s, %v", ann, err)
	}
	tle, err := s.TransparencyLogEntry(e, false)
	if err != nil || tle.InclusionProof != nil || tle.IntegratedTime != e.IntegratedTime || tle.KindVersion.Kind != testenv.RekorHashedRekord {
		t.Errorf("entry without proof: %v, %v", tle, err)
	}
	tle, err = s.TransparencyLogEntry(e, true)
	if err != nil || tle.InclusionProof == nil {
		t.Errorf("entry with proof: %v, %v", tle, err)
	}
	sum := sha256.Sum256([]byte("payload"))
	if !bytes.Contains(e.Body, []byte(hex.EncodeToString(sum[:]))) {
		t.Errorf("hashedrekord body %s does not name the payload digest", e.Body)
	}
	if _, err := s.Bundle(k, false); err == nil {
		t.Error("a classic signature packaged as a bundle")
	}
	st, err := s.SignStatement(s.DefaultLeaf(), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Classic(false); err == nil {
		t.Error("a DSSE signature packaged as a .sig layer")
	}
	if _, err := testenv.BundleProto(testenv.BundleOptions{}); err == nil {
		t.Error("a bundle without certificate or key")
	}
}
