package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/policy"
)

// TestCosignCLIBundles checks what the real cosign (v2.6.5) attaches to
// an image, offline with a key against the registry on 127.0.0.1, with the
// referrers API on and off: `sign --new-bundle-format` (a DSSE bundle of a
// https://sigstore.dev/cosign/sign/v1 statement naming the image digest,
// with a public key hint and no log entry), `attest --new-bundle-format`
// and the classic `attest` (.att layer), and that conditions evaluate
// over the predicate cosign wrote. This test fetches what cosign wrote
// with go-containerregistry itself, to stay within this package; the
// source package does so for the daemon.
func TestCosignCLIBundles(t *testing.T) {
	for _, referrers := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrers=%v", referrers), func(t *testing.T) {
			c := testenv.NewCosign(t)
			reg := testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: referrers})
			img, err := testenv.RandomImage(1)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := reg.Push(img, "app:v1")
			if err != nil {
				t.Fatal(err)
			}
			sibling, err := testenv.RandomImage(2)
			if err != nil {
				t.Fatal(err)
			}
			siblingRef, err := reg.Push(sibling, "app:v2")
			if err != nil {
				t.Fatal(err)
			}
			priv, pub, err := c.GenerateKeyPair("release")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Sign(priv, ref.String(), "--new-bundle-format"); err != nil {
				t.Fatal(err)
			}
			predicate := filepath.Join(c.Dir, "provenance.json")
			pj, _ := json.Marshal(provenance)
			if err := os.WriteFile(predicate, pj, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Run("attest", "--key", priv, "--tlog-upload=false", "--yes", "--new-bundle-format", "--type", "slsaprovenance1", "--predicate", predicate, ref.String()); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Run("attest", "--key", priv, "--tlog-upload=false", "--yes", "--type", "slsaprovenance1", "--predicate", predicate, ref.String()); err != nil {
				t.Fatal(err)
			}

			bundles := fetchBundles(t, ref)
			if len(bundles) != 2 {
				t.Fatalf("%d bundles attached, want the signature and the attestation", len(bundles))
			}
			atts := fetchAttestations(t, ref)
			if len(atts) != 1 {
				t.Fatalf("%d .att layers, want 1", len(atts))
			}
			pol := cosignPolicy(t, pub, `predicate.buildDefinition.externalParameters.ref == "refs/tags/v1.0.0"`, `predicate.buildDefinition.externalParameters.ref == "refs/heads/main"`)
			sigReq, attOK, attNo := pol.Rules[0].Signatures, pol.Rules[0].Attestations[0], pol.Rules[0].Attestations[1]

			v := newVerifier(t)
			subject := Subject{Repository: ref.Context().Name(), Digest: ref.DigestStr()}
			res := v.VerifySignaturesAndBundles(context.Background(), subject, nil, bundles, sigReq)
			if !res.Satisfied || res.By[0].Kind != KindBundle || res.By[0].PredicateType != CosignSignPredicateType || !res.By[0].SignedAt.IsZero() {
				t.Fatalf("cosign's bundle signature: %+v", res)
			}
			other := Subject{Repository: ref.Context().Name(), Digest: siblingRef.DigestStr()}
			if res := v.VerifySignaturesAndBundles(context.Background(), other, nil, bundles, sigReq); res.Satisfied {
				t.Fatalf("cosign's bundle accepted for another image: %+v", res)
			}
			for name, in := range map[string]struct {
				atts    []artifact.Attestation
				bundles []artifact.Bundle
			}{"bundle": {nil, bundles}, ".att": {atts, nil}} {
				if res := v.VerifyAttestations(context.Background(), subject, in.atts, in.bundles, attOK); !res.Satisfied || res.By[0].PredicateType != slsaV1 {
					t.Errorf("%s attestation, true condition: %+v", name, res)
				}
				res := v.VerifyAttestations(context.Background(), subject, in.atts, in.bundles, attNo)
				if res.Satisfied || !strings.Contains(strings.Join(res.Reasons, "\n"), "condition is false") {
					t.Errorf("%s attestation, false condition: %+v", name, res)
				}
				if res := v.VerifyAttestations(context.Background(), other, in.atts, in.bundles, attOK); res.Satisfied {
					t.Errorf("%s attestation accepted for another image: %+v", name, res)
				}
			}
		})
	}
}

// cosignPolicy is a policy requiring the key at pub for signatures and
// two slsa v1 attestations, one per condition.
func cosignPolicy(t *testing.T, pub string, conds ...string) *policy.Policy {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "rules:\n  - name: app\n    images: [\"**\"]\n    signatures:\n      authorities: [{key: %q}]\n    attestations:\n", pub)
	for _, c := range conds {
		fmt.Fprintf(&b, "      - predicateType: %s\n        authorities: [{key: %q}]\n        conditions: [%q]\n", slsaV1, pub, c)
	}
	pol, err := policy.Parse(filepath.Join(t.TempDir(), "policy.yaml"), []byte(b.String()))
	if err != nil {
		t.Fatalf("policy: %v\n%s", err, b.String())
	}
	return pol
}

// fetchBundles returns the Sigstore bundles attached to ref: referrers
// (go-containerregistry falls back to the sha256-<hex> tag without the
// API) whose manifest has a bundle layer.
func fetchBundles(t *testing.T, ref name.Digest) []artifact.Bundle {
	t.Helper()
	idx, err := remote.Referrers(ref)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []artifact.Bundle
	for _, d := range im.Manifests {
		m := fetchManifest(t, ref.Context().Digest(d.Digest.String()))
		for _, l := range m.Layers {
			if !strings.HasPrefix(string(l.MediaType), bundleMediaTypePrefix) {
				continue
			}
			out = append(out, artifact.Bundle{JSON: fetchBlob(t, ref, l.Digest), MediaType: string(l.MediaType), Attached: ref.DigestStr(), Origin: "referrer " + d.Digest.String()})
		}
	}
	return out
}

// fetchAttestations returns the layers of cosign's sha256-<hex>.att tag.
func fetchAttestations(t *testing.T, ref name.Digest) []artifact.Attestation {
	t.Helper()
	tag := ref.Context().Tag(strings.Replace(ref.DigestStr(), ":", "-", 1) + ".att")
	m := fetchManifest(t, tag)
	var out []artifact.Attestation
	for _, l := range m.Layers {
		out = append(out, artifact.Attestation{
			Envelope:    fetchBlob(t, ref, l.Digest),
			Certificate: []byte(l.Annotations["dev.sigstore.cosign/certificate"]),
			Chain:       []byte(l.Annotations["dev.sigstore.cosign/chain"]),
			RekorBundle: []byte(l.Annotations["dev.sigstore.cosign/bundle"]),
			Attached:    ref.DigestStr(), Origin: tag.String(),
		})
	}
	return out
}

func fetchManifest(t *testing.T, ref name.Reference) *v1.Manifest {
	t.Helper()
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

func fetchBlob(t *testing.T, ref name.Digest, h v1.Hash) []byte {
	t.Helper()
	l, err := remote.Layer(ref.Context().Digest(h.String()))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxBundleSize+1))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
