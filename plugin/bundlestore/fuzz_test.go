package bundlestore

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/plugin/artifact"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
	"github.com/sealgate/sealgate/plugin/source/sourcetest"
)

// fuzzExport is a valid export file with every kind of material, for
// seeds.
func fuzzExport(f *testing.F) ([]byte, name.Digest) {
	image, _ := name.NewDigest("registry.example/app@" + sourcetest.DigestOf([]byte("image")).String())
	src := &fakeSource{
		sigs:    []artifact.Signature{{Payload: sourcetest.SimpleSigning(image), Signature: []byte("sig"), Certificate: []byte("CERT"), Attached: image.DigestStr()}},
		atts:    []artifact.Attestation{{Envelope: sourcetest.Envelope(1), RekorBundle: []byte(`{}`)}},
		bundles: []artifact.Bundle{{JSON: sourcetest.FakeBundle(1), MediaType: ocimaterial.BundleMediaTypeV03, ArtifactType: ocimaterial.BundleMediaTypeV03}},
	}
	var buf bytes.Buffer
	if _, err := Export(context.Background(), src, []name.Digest{image}, &buf); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes(), image
}

// FuzzParseArchive feeds export files to the importer's parser: whatever
// it accepts is within the limits, names only the images its header lists,
// and every blob it returns is one an index names and matches its digest.
func FuzzParseArchive(f *testing.F) {
	good, _ := fuzzExport(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add(writeMembers(f, []member{{name: exportHeaderName, body: []byte(`{"mediaType":"` + ExportMediaType + `","images":[]}`)}}))
	lim, _ := ocimaterial.Limits{Signatures: 4, Referrers: 4, PayloadBytes: 4 << 10, EnvelopeBytes: 4 << 10, BundleBytes: 4 << 10, ManifestBytes: 16 << 10}.WithDefaults()
	const maxBytes = 1 << 20
	f.Fuzz(func(t *testing.T, file []byte) {
		entries, err := parseArchive(bytes.NewReader(file), lim, maxBytes)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range entries {
			if seen[e.index.image.String()] {
				t.Fatalf("image %s twice", e.index.image)
			}
			seen[e.index.image.String()] = true
			d, err := name.NewDigest(e.ref)
			if err != nil || d.DigestStr() != e.index.image.String() {
				t.Fatalf("ref %q does not name image %s", e.ref, e.index.image)
			}
			if err := e.index.check(lim); err != nil {
				t.Fatalf("accepted an index over the limits: %v", err)
			}
			named := map[string]bool{}
			for _, l := range indexLayers(e.index) {
				named[l.Digest.String()] = true
				b, ok := e.blobs[l.Digest]
				if !ok {
					t.Fatalf("blob %s named but not returned", l.Digest)
				}
				if err := ocimaterial.CheckBlob(l.Digest, l.Size, b); err != nil {
					t.Fatalf("returned a blob that does not match: %v", err)
				}
			}
			for h := range e.blobs {
				if !named[h.String()] {
					t.Fatalf("blob %s returned but named by no index", h)
				}
			}
		}
	})
}

// FuzzParseLocalIndex feeds index files of the store to the parser: what
// it accepts is within the limits, of the right media types, for the image
// asked, and survives a write and a read unchanged.
func FuzzParseLocalIndex(f *testing.F) {
	good, image := fuzzExport(f)
	h := sourcetest.DigestOf([]byte("image"))
	for _, m := range readMembers(f, good) {
		if strings.HasSuffix(m.name, "index.json") {
			f.Add(m.body)
		}
	}
	f.Add([]byte(`{"mediaType":"` + localIndexMediaType + `","image":"` + image.DigestStr() + `","signatures":[],"attestations":[],"bundles":[]}`))
	f.Add([]byte(`{"mediaType":"` + localIndexMediaType + `","image":"` + image.DigestStr() + `","signatures":[],"signatures":[],"attestations":[],"bundles":[]}`))
	lim, _ := ocimaterial.Limits{Signatures: 4, Referrers: 2, PayloadBytes: 1 << 10}.WithDefaults()
	f.Fuzz(func(t *testing.T, body []byte) {
		idx, err := parseLocalIndex(body, h, lim)
		if err != nil {
			return
		}
		if idx.image != h || len(idx.signatures) > lim.Signatures || len(idx.attestations) > lim.Signatures || len(idx.bundles) > lim.Referrers {
			t.Fatalf("accepted %+v", idx)
		}
		if idx.manifest != nil && (idx.manifest.Digest != h || idx.manifest.Size > lim.ManifestBytes) {
			t.Fatalf("accepted manifest %+v", idx.manifest)
		}
		for _, l := range idx.signatures {
			if l.MediaType != ocimaterial.SimpleSigningMediaType || l.Size < 0 || l.Size > lim.PayloadBytes {
				t.Fatalf("accepted signature %+v", l)
			}
		}
		for _, l := range idx.attestations {
			if l.MediaType != ocimaterial.DSSEMediaType || l.Size < 0 || l.Size > lim.EnvelopeBytes {
				t.Fatalf("accepted attestation %+v", l)
			}
		}
		for _, b := range idx.bundles {
			if !ocimaterial.IsBundleMediaType(b.MediaType) || !ocimaterial.IsBundleMediaType(b.artifactType) || b.Size < 0 || b.Size > lim.BundleBytes {
				t.Fatalf("accepted bundle %+v", b)
			}
		}
		again, err := idx.marshal()
		if err != nil {
			t.Fatal(err)
		}
		idx2, err := parseLocalIndex(again, h, lim)
		if err != nil {
			t.Fatalf("what marshal wrote is refused: %v\n%s", err, again)
		}
		if third, _ := idx2.marshal(); !bytes.Equal(third, again) {
			t.Fatalf("index does not survive a round trip:\n%s\n%s", again, third)
		}
	})
}

// FuzzParseLayoutIndex feeds the index.json of an OCI layout (cosign save)
// to its parser.
func FuzzParseLayoutIndex(f *testing.F) {
	d := sourcetest.DigestOf([]byte("x")).String()
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"` + ocimaterial.MediaTypeOCIIndex + `","manifests":[{"mediaType":"` + ocimaterial.MediaTypeOCIManifest + `","size":1,"digest":"` + d + `","annotations":{"kind":"` + layoutKindImage + `"}}]}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"size":1,"digest":"` + d + `","platform":{"os":"linux"}}]}`))
	f.Add(readTestdata(f, "oci-index.json"))
	f.Fuzz(func(t *testing.T, body []byte) {
		descs, err := parseLayoutIndex(body, 8)
		if err != nil {
			return
		}
		if len(descs) > 8 {
			t.Fatalf("%d descriptors passed a limit of 8", len(descs))
		}
		for _, d := range descs {
			if d.size < 0 || d.digest.Hex == "" {
				t.Fatalf("accepted %+v", d)
			}
		}
	})
}
