package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestPlatformChild(t *testing.T) {
	m := Manifest{Children: []Child{
		NewChild("a", "linux/arm/v7"),
		NewChild("b", "linux/arm64/v8"),
		NewChild("c", "linux/amd64"),
		NewChild("d", "windows/amd64"),
	}}
	tests := []struct{ platform, want string }{
		{"linux/amd64", "c"},
		{"linux/arm64", "b"},
		{"linux/arm64/v8", "b"},
		{"linux/arm/v7", "a"},
		{"linux/arm/v6", ""},
		{"linux/s390x", ""},
	}
	for _, tt := range tests {
		if got, err := m.PlatformChild(platforms.Only(platforms.MustParse(tt.platform))); got != tt.want || err != nil {
			t.Errorf("PlatformChild(%q) = %q, %v; want %q", tt.platform, got, err, tt.want)
		}
	}
}

// memStore is a content provider over blobs in memory, so that
// containerd's own images.Manifest can choose from the same index.
type memStore map[digest.Digest][]byte

type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

func (s memStore) ReaderAt(_ context.Context, desc specs.Descriptor) (content.ReaderAt, error) {
	b, ok := s[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("%s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return memReader{bytes.NewReader(b)}, nil
}

func (s memStore) put(v any) (digest.Digest, int64) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	d := digest.FromBytes(b)
	s[d] = b
	return d, int64(len(b))
}

// child describes one child of a test index: the platform the index lists
// (nil: none) and the platform its config says.
type child struct {
	listed *specs.Platform
	config specs.Platform
}

func plat(os, arch, variant string, features ...string) *specs.Platform {
	return &specs.Platform{OS: os, Architecture: arch, Variant: variant, OSFeatures: features}
}

// TestRegressionPlatformChildIsContainerds: for each index shape an
// adversarial review used (variants, children without os, architecture
// spellings, os.features, order, children without a platform), the child
// sealgate verifies is the one containerd's own images.Manifest selects
// with the same matcher — the child the runtime runs.
func TestRegressionPlatformChildIsContainerds(t *testing.T) {
	amd64 := specs.Platform{OS: "linux", Architecture: "amd64"}
	shapes := map[string][]child{
		"variant v1 before plain":        {{plat("linux", "amd64", "v1"), amd64}, {plat("linux", "amd64", ""), amd64}},
		"plain before variant v1":        {{plat("linux", "amd64", ""), amd64}, {plat("linux", "amd64", "v1"), amd64}},
		"variants v2 v3":                 {{plat("linux", "amd64", "v3"), amd64}, {plat("linux", "amd64", "v2"), amd64}},
		"child without os":               {{plat("", "amd64", ""), amd64}, {plat("linux", "amd64", ""), amd64}},
		"x86_64 spelling":                {{plat("linux", "x86_64", ""), amd64}, {plat("linux", "amd64", ""), amd64}},
		"upper case":                     {{plat("Linux", "AMD64", ""), amd64}, {plat("linux", "amd64", ""), amd64}},
		"os.features":                    {{plat("linux", "amd64", "", "sse4"), amd64}, {plat("linux", "amd64", ""), amd64}},
		"same platform twice":            {{plat("linux", "amd64", ""), amd64}, {plat("linux", "amd64", ""), amd64}},
		"arm64 first":                    {{plat("linux", "arm64", ""), amd64}, {plat("linux", "amd64", ""), amd64}},
		"no platform listed first":       {{nil, amd64}, {plat("linux", "amd64", ""), amd64}},
		"only no platform, config match": {{nil, amd64}},
		"arm variants":                   {{plat("linux", "arm", "v6"), amd64}, {plat("linux", "arm", "v7"), amd64}, {plat("linux", "arm", "v5"), amd64}},
		"arm64 v8 spelling":              {{plat("linux", "arm64", "v8"), amd64}, {plat("linux", "aarch64", ""), amd64}},
	}
	matchers := map[string]platforms.MatchComparer{
		"this node":    platforms.Default(),
		"linux/amd64":  platforms.Only(platforms.MustParse("linux/amd64")),
		"linux/arm64":  platforms.Only(platforms.MustParse("linux/arm64")),
		"linux/arm/v7": platforms.Only(platforms.MustParse("linux/arm/v7")),
	}
	for name, kids := range shapes {
		store := memStore{}
		var idx specs.Index
		idx.SchemaVersion = 2
		idx.MediaType = specs.MediaTypeImageIndex
		m := Manifest{MediaType: specs.MediaTypeImageIndex}
		byDigest := map[digest.Digest]string{}
		for i, k := range kids {
			cfgD, cfgN := store.put(specs.Image{Platform: k.config, RootFS: specs.RootFS{Type: "layers"}})
			man := specs.Manifest{MediaType: specs.MediaTypeImageManifest,
				Config:      specs.Descriptor{MediaType: specs.MediaTypeImageConfig, Digest: cfgD, Size: cfgN},
				Annotations: map[string]string{"n": fmt.Sprint(i)}}
			man.SchemaVersion = 2
			d, n := store.put(man)
			byDigest[d] = fmt.Sprint(i)
			idx.Manifests = append(idx.Manifests, specs.Descriptor{MediaType: specs.MediaTypeImageManifest, Digest: d, Size: n, Platform: k.listed})
			c := Child{Digest: d.String(), MediaType: specs.MediaTypeImageManifest}
			if k.listed != nil {
				p := *k.listed
				c.Spec = &p
			}
			m.Children = append(m.Children, c)
		}
		idxD, idxN := store.put(idx)
		for mname, matcher := range matchers {
			t.Run(name+"/"+mname, func(t *testing.T) {
				want := ""
				got, err := images.Manifest(context.Background(), store, specs.Descriptor{MediaType: specs.MediaTypeImageIndex, Digest: idxD, Size: idxN}, matcher)
				if err == nil {
					d, _ := store.put(got) // re-encoding is byte-identical
					want = d.String()
				}
				ours, ourErr := m.PlatformChild(matcher)
				if ourErr != nil {
					t.Fatalf("PlatformChild: %v", ourErr)
				}
				if want == "" && ours != "" {
					// containerd runs nothing (the chosen child's config
					// does not match): whatever sealgate verified, nothing
					// unverified runs. Only a chosen child naming no
					// platform may do this.
					for _, c := range m.Children {
						if c.Digest == ours && c.Spec != nil {
							t.Errorf("containerd runs nothing, sealgate chose child %s, which lists a platform", byDigest[digest.Digest(ours)])
						}
					}
					return
				}
				if ours != want {
					t.Errorf("sealgate verifies child %s, containerd runs child %s (%v)", byDigest[digest.Digest(ours)], byDigest[digest.Digest(want)], err)
				}
			})
		}
	}
}

func TestPlatformChildNestedIndex(t *testing.T) {
	m := Manifest{Children: []Child{{Digest: "n", MediaType: specs.MediaTypeImageIndex, Spec: plat("linux", "amd64", "")}}}
	if _, err := m.PlatformChild(platforms.Only(platforms.MustParse("linux/amd64"))); err == nil {
		t.Error("nested index chosen without an error")
	}
}

func TestIsIndex(t *testing.T) {
	for mt, want := range map[string]bool{
		"application/vnd.oci.image.index.v1+json":                   true,
		"application/vnd.docker.distribution.manifest.list.v2+json": true,
		"application/vnd.oci.image.manifest.v1+json":                false,
		"": false,
	} {
		if got := (Manifest{MediaType: mt}).IsIndex(); got != want {
			t.Errorf("IsIndex(%q) = %v", mt, got)
		}
	}
}
