package source

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

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
