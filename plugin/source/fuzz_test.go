package source

import (
	"encoding/base64"
	"strings"
	"testing"
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
		layers, err := parseSignatureManifest(body, lim)
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
			if checkBlob(l.Digest, l.Size, payload) != nil {
				continue
			}
			s := newSignature(l, payload, "sha256:x", "o")
			if b64, ok := l.Annotations[annotationSignature]; ok && len(s.Signature) > 0 {
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
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), mediaTypeDockerList+"; charset=utf-8")
	f.Add([]byte(`{"mediaType":"`+mediaTypeOCIIndex+`","manifests":[{"digest":"sha256:`+strings.Repeat("1", 64)+`","platform":{"os":"a","architecture":"b","variant":"c"}}]}`), "")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		m, err := parseDescription(digestOf(body), contentType, body)
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
