package verify

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

// BenchmarkVerifyKeylessBundle verifies a keyless image-signature bundle
// (v0.3, DSSE, certificate with SCT, Rekor entry with inclusion promise
// and proof) from local bytes with the Verifier already built, as a
// decision on a cache miss does: the trusted root was parsed once, in New.
// It reports the median besides the mean; the target is under 5 ms.
func BenchmarkVerifyKeylessBundle(b *testing.B) {
	ts := newTestSigstore(b)
	v := ts.verifier(b)
	p := ts.bundleParts(b, ts.defaultLeaf(), CosignSignPredicateType, testDigest, nil)
	bundles := []artifact.Bundle{p.bundle(b, ts, false)}
	req := &policy.Signatures{Authorities: []*policy.Authority{keylessAuthority(func(k *policy.KeylessAuthority) {
		k.SourceRepositoryURI = policy.StringMatch{Exact: testRepoURI}
	})}}
	subject := Subject{Repository: testRepo, Digest: testDigest}
	ctx := context.Background()
	var times []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		res := v.VerifyBundleSignatures(ctx, subject, bundles, req)
		times = append(times, time.Since(start))
		if !res.Satisfied {
			b.Fatal(res.Reasons)
		}
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "median-ns/op")
}

// BenchmarkVerifyKeylessClassic is the same for cosign's classic .sig
// layer with its certificate and Rekor bundle annotations.
func BenchmarkVerifyKeylessClassic(b *testing.B) {
	ts := newTestSigstore(b)
	v := ts.verifier(b)
	p := ts.classicParts(b, ts.defaultLeaf(), testDigest)
	sigs := []artifact.Signature{p.classic(b, false)}
	req := &policy.Signatures{Authorities: []*policy.Authority{keylessAuthority(nil)}}
	subject := Subject{Repository: testRepo, Digest: testDigest}
	b.ReportAllocs()
	for b.Loop() {
		if res := v.VerifySignatures(context.Background(), subject, sigs, req); !res.Satisfied {
			b.Fatal(res.Reasons)
		}
	}
}

// TestConcurrentKeyless is meant for -race: one Verifier, keyless and key
// decisions in every form at once.
func TestConcurrentKeyless(t *testing.T) {
	ts := newTestSigstore(t)
	v := ts.verifier(t)
	key := ecKey(t)
	classic := ts.classicParts(t, ts.defaultLeaf(), testDigest)
	bundle := ts.bundleParts(t, ts.defaultLeaf(), CosignSignPredicateType, testDigest, nil)
	att := ts.bundleParts(t, ts.defaultLeaf(), slsaV1, testDigest, provenance)
	req := &policy.Signatures{Threshold: 2, Authorities: []*policy.Authority{keylessAuthority(nil), keyAuthority(t, "keys/k.pub", key.Public())}}
	sigs := []artifact.Signature{classic.classic(t, false)}
	bundles := []artifact.Bundle{bundle.bundle(t, ts, false), keyImageBundle(t, ts, key, testDigest, false)}
	attReq := &policy.Attestation{PredicateType: slsaV1, Authorities: []*policy.Authority{keylessAuthority(nil)}}
	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for range 16 {
		wg.Go(func() {
			if res := v.VerifySignaturesAndBundles(context.Background(), regressionSubject, sigs, bundles, req); !res.Satisfied || len(res.By) != 2 {
				errs <- "signatures: " + res.Reasons[0]
			}
			if res := v.VerifyAttestations(context.Background(), regressionSubject, []artifact.Attestation{att.attestation(t)}, nil, attReq); !res.Satisfied {
				errs <- "attestations"
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
