package source

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

var fuzzSeedFiles = []string{
	"cosign-signature-manifest.json",
	"keyless-signature-manifest.json",
	"oci-index.json",
	"docker-manifest-list.json",
	"docker-manifest.json",
}

// FuzzParseSignatureManifest feeds registry replies for a signature tag to
// the parser and to the step that turns layers into signatures.
func FuzzParseSignatureManifest(f *testing.F) {
	for _, file := range fuzzSeedFiles {
		f.Add(readTestdata(f, file), []byte(`{"critical":{}}`))
	}
	f.Add([]byte(`{"schemaVersion":2,"layers":[{"size":1,"digest":"sha256:`+strings.Repeat("0", 64)+`","annotations":{"dev.cosignproject.cosign/signature":"%%"}}]}`), []byte("x"))
	f.Add([]byte(`{"schemaVersion":2,"layers":[],"layers":[]}`), []byte(nil))
	lim := ocimaterial.Limits{ManifestBytes: 1 << 20, PayloadBytes: 1 << 10, Signatures: 4}
	f.Fuzz(func(t *testing.T, body, payload []byte) {
		layers, err := ocimaterial.ParseSignatureManifest(body, lim)
		if err != nil {
			return
		}
		if len(layers) > lim.Signatures {
			t.Fatalf("%d layers passed a limit of %d", len(layers), lim.Signatures)
		}
		for i, l := range layers {
			if l.Size < 0 || l.Size > lim.PayloadBytes {
				t.Fatalf("layer %d size %d passed the limit", i, l.Size)
			}
			if ocimaterial.CheckBlob(l.Digest, l.Size, payload) != nil {
				continue
			}
			s := ocimaterial.NewSignature(l, payload, "sha256:x", "o")
			if b64, ok := l.Annotations[ocimaterial.AnnotationSignature]; ok && len(s.Signature) > 0 {
				if base64.StdEncoding.EncodeToString(s.Signature) != b64 {
					t.Fatalf("signature %q does not round-trip", b64)
				}
			}
		}
	})
}

// FuzzParseDescription feeds manifests and indexes, with the digest of the
// body itself so that parsing gets past the digest check.
func FuzzParseDescription(f *testing.F) {
	for _, file := range fuzzSeedFiles {
		f.Add(readTestdata(f, file), "")
	}
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), ocimaterial.MediaTypeDockerList+"; charset=utf-8")
	f.Add([]byte(`{"mediaType":"`+ocimaterial.MediaTypeOCIIndex+`","manifests":[{"digest":"sha256:`+strings.Repeat("1", 64)+`","platform":{"os":"a","architecture":"b","variant":"c"}}]}`), "")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		m, err := ocimaterial.ParseDescription(digestOf(body), contentType, body)
		if err != nil {
			return
		}
		if m.Digest != digestOf(body).String() || m.MediaType == "" {
			t.Fatalf("bad result %+v", m)
		}
		if !m.IsIndex() && len(m.Children) > 0 {
			t.Fatalf("a manifest with children: %+v", m)
		}
		for _, c := range m.Children {
			if c.Digest == "" || strings.Count(c.Platform, "/") > 2 {
				t.Fatalf("bad child %+v", c)
			}
		}
	})
}

var referrerSeedFiles = []string{
	"cosign-referrers.json",
	"cosign-referrers-fallback.json",
	"cosign-bundle-manifest.json",
	"cosign-attestation-manifest.json",
	"oci-index.json",
}

// FuzzParseReferrers feeds referrers listings (API replies and fallback
// indexes) to the parser.
func FuzzParseReferrers(f *testing.F) {
	for _, file := range referrerSeedFiles {
		f.Add(readTestdata(f, file))
	}
	d := `"sha256:` + strings.Repeat("0", 64) + `"`
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"size":1,"digest":` + d + `},{"size":1,"digest":` + d + `}]}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"size":9999999,"digest":` + d + `,"artifactType":"` + ocimaterial.BundleMediaTypeV01 + `"}]}`))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"` + ocimaterial.MediaTypeOCIIndex + `","manifests":[{"mediaType":"` + ocimaterial.MediaTypeOCIIndex + `","size":1,"digest":` + d + `,"annotations":{"a":"b"}}]}`))
	lim := ocimaterial.Limits{ManifestBytes: 1 << 20, Referrers: 4}
	f.Fuzz(func(t *testing.T, body []byte) {
		refs, err := parseReferrers(body, lim)
		if err != nil {
			return
		}
		if len(refs) > lim.Referrers {
			t.Fatalf("%d candidates passed a limit of %d", len(refs), lim.Referrers)
		}
		seen := map[string]bool{}
		for _, r := range refs {
			if r.Size < 0 || r.Size > lim.ManifestBytes {
				t.Fatalf("candidate %s size %d passed the limit", r.Digest, r.Size)
			}
			if _, err := v1.NewHash(r.Digest.String()); err != nil {
				t.Fatalf("candidate with a bad digest %q", r.Digest)
			}
			if seen[r.Digest.String()] {
				t.Fatalf("candidate %s twice", r.Digest)
			}
			seen[r.Digest.String()] = true
			if r.ArtifactType != "" && r.ArtifactType != ocimaterial.MediaTypeEmptyConfig && !ocimaterial.IsBundleMediaType(r.ArtifactType) {
				t.Fatalf("candidate %s of artifact type %q", r.Digest, r.ArtifactType)
			}
		}
	})
}

// FuzzParseReferrerManifest feeds a referrer's manifest to the parser and
// to the step that decides whether it holds a bundle for a subject.
func FuzzParseReferrerManifest(f *testing.F) {
	subject := "sha256:baed71af2c5166d3c1813357fc14a76059e72d1f9736702e8809b18b7774bcba" // the fixtures' image
	for _, file := range referrerSeedFiles {
		f.Add(readTestdata(f, file), subject)
	}
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"`+ocimaterial.BundleMediaTypeV02+`"},"subject":{"digest":"`+subject+`"},"layers":[{"mediaType":"`+ocimaterial.BundleMediaTypeV02+`","size":1,"digest":"`+subject+`"}]}`), subject)
	lim := ocimaterial.Limits{BundleBytes: 1 << 10}
	f.Fuzz(func(t *testing.T, body []byte, subj string) {
		h, err := v1.NewHash(subj)
		if err != nil {
			return
		}
		m, err := ocimaterial.ParseReferrerManifest(body)
		if err != nil {
			return
		}
		l, ok, err := ocimaterial.BundleLayer(m, h, lim)
		if err != nil || !ok {
			return
		}
		if !m.Image || !ocimaterial.IsBundleMediaType(m.ArtifactType) || m.Subject != h.String() {
			t.Fatalf("selected a manifest that is not a bundle for %s: %+v", h, m)
		}
		if !ocimaterial.IsBundleMediaType(l.MediaType) || l.Size < 0 || l.Size > lim.BundleBytes {
			t.Fatalf("selected a bad layer %+v", l)
		}
	})
}

// FuzzParseAttestationManifest feeds registry replies for an attestation
// tag to the parser and to the step that turns layers into attestations.
func FuzzParseAttestationManifest(f *testing.F) {
	for _, file := range append(fuzzSeedFiles, referrerSeedFiles...) {
		f.Add(readTestdata(f, file), readTestdata(f, "cosign-dsse-envelope.json"))
	}
	f.Add([]byte(`{"schemaVersion":2,"layers":[{"mediaType":"`+ocimaterial.DSSEMediaType+`","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","annotations":{"dev.sigstore.cosign/rfc3161timestamp":"{}"}}]}`), []byte("{}"))
	lim := ocimaterial.Limits{Signatures: 4, EnvelopeBytes: 1 << 10}
	f.Fuzz(func(t *testing.T, body, env []byte) {
		layers, err := ocimaterial.ParseAttestationManifest(body, lim)
		if err != nil {
			return
		}
		if len(layers) > lim.Signatures {
			t.Fatalf("%d layers passed a limit of %d", len(layers), lim.Signatures)
		}
		for i, l := range layers {
			if l.MediaType != ocimaterial.DSSEMediaType || l.Size < 0 || l.Size > lim.EnvelopeBytes {
				t.Fatalf("layer %d passed: %+v", i, l)
			}
			if ocimaterial.CheckBlob(l.Digest, l.Size, env) != nil {
				continue
			}
			a := ocimaterial.NewAttestation(l, env, "sha256:x", "o")
			if !bytes.Equal(a.Envelope, env) || string(a.Timestamp) != l.Annotations[ocimaterial.AnnotationTimestamp] {
				t.Fatalf("attestation %+v does not carry layer %d", a, i)
			}
		}
	})
}
