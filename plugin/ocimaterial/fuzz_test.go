package ocimaterial

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
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
	lim := Limits{ManifestBytes: 1 << 20, PayloadBytes: 1 << 10, Signatures: 4}
	f.Fuzz(func(t *testing.T, body, payload []byte) {
		layers, err := ParseSignatureManifest(body, lim)
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
			if CheckBlob(l.Digest, l.Size, payload) != nil {
				continue
			}
			s := NewSignature(l, payload, "sha256:x", "o")
			if b64, ok := l.Annotations[AnnotationSignature]; ok && len(s.Signature) > 0 {
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
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), MediaTypeDockerList+"; charset=utf-8")
	f.Add([]byte(`{"mediaType":"`+MediaTypeOCIIndex+`","manifests":[{"digest":"sha256:`+strings.Repeat("1", 64)+`","platform":{"os":"a","architecture":"b","variant":"c"}}]}`), "")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		m, err := ParseDescription(digestOf(body), contentType, body)
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

// FuzzParseReferrerManifest feeds a referrer's manifest to the parser and
// to the step that decides whether it holds a bundle for a subject.
func FuzzParseReferrerManifest(f *testing.F) {
	subject := "sha256:baed71af2c5166d3c1813357fc14a76059e72d1f9736702e8809b18b7774bcba" // the fixtures' image
	for _, file := range referrerSeedFiles {
		f.Add(readTestdata(f, file), subject)
	}
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"`+BundleMediaTypeV02+`"},"subject":{"digest":"`+subject+`"},"layers":[{"mediaType":"`+BundleMediaTypeV02+`","size":1,"digest":"`+subject+`"}]}`), subject)
	lim := Limits{BundleBytes: 1 << 10}
	f.Fuzz(func(t *testing.T, body []byte, subj string) {
		h, err := v1.NewHash(subj)
		if err != nil {
			return
		}
		m, err := ParseReferrerManifest(body)
		if err != nil {
			return
		}
		l, ok, err := BundleLayer(m, h, lim)
		if err != nil || !ok {
			return
		}
		if !m.Image || !IsBundleMediaType(m.ArtifactType) || m.Subject != h.String() {
			t.Fatalf("selected a manifest that is not a bundle for %s: %+v", h, m)
		}
		if !IsBundleMediaType(l.MediaType) || l.Size < 0 || l.Size > lim.BundleBytes {
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
	f.Add([]byte(`{"schemaVersion":2,"layers":[{"mediaType":"`+DSSEMediaType+`","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","annotations":{"dev.sigstore.cosign/rfc3161timestamp":"{}"}}]}`), []byte("{}"))
	lim := Limits{Signatures: 4, EnvelopeBytes: 1 << 10}
	f.Fuzz(func(t *testing.T, body, env []byte) {
		layers, err := ParseAttestationManifest(body, lim)
		if err != nil {
			return
		}
		if len(layers) > lim.Signatures {
			t.Fatalf("%d layers passed a limit of %d", len(layers), lim.Signatures)
		}
		for i, l := range layers {
			if l.MediaType != DSSEMediaType || l.Size < 0 || l.Size > lim.EnvelopeBytes {
				t.Fatalf("layer %d passed: %+v", i, l)
			}
			if CheckBlob(l.Digest, l.Size, env) != nil {
				continue
			}
			a := NewAttestation(l, env, "sha256:x", "o")
			if !bytes.Equal(a.Envelope, env) || string(a.Timestamp) != l.Annotations[AnnotationTimestamp] {
				t.Fatalf("attestation %+v does not carry layer %d", a, i)
			}
		}
	})
}
