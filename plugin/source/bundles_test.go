package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/artifact"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
	"github.com/sealgate/sealgate/plugin/source/sourcetest"
)

// referrerModes are the two ways a registry lists referrers: the OCI 1.1
// referrers API, and the tag fallback of registries without it.
var referrerModes = []struct {
	name string
	opts []sourcetest.RegistryOption
}{
	{"referrers API", []sourcetest.RegistryOption{sourcetest.WithReferrers()}},
	{"tag fallback", nil},
}

// listingPath says whether r asks for image's referrers listing (the API
// or the fallback tag).
func listingPath(r *http.Request, image name.Digest) bool {
	h, _ := v1.NewHash(image.DigestStr())
	return strings.HasSuffix(r.URL.Path, "/referrers/"+h.String()) ||
		strings.HasSuffix(r.URL.Path, "/manifests/"+h.Algorithm+"-"+h.Hex)
}

func bundleDigests(bs []artifact.Bundle) []string {
	var out []string
	for _, b := range bs {
		_, d, _ := strings.Cut(b.Origin, "@")
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

func sortedDigests(hs ...v1.Hash) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.String())
	}
	slices.Sort(out)
	return out
}

func TestBundlesFound(t *testing.T) {
	for _, mode := range referrerModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := sourcetest.NewRegistry(t, mode.opts...)
			image := sourcetest.PushImage(t, reg.Host, reg.Host, "team/app")
			want := map[string]sourcetest.Referrer{}
			for i, at := range []string{ocimaterial.BundleMediaTypeV03Alt, ocimaterial.BundleMediaTypeV01} {
				r := sourcetest.Referrer{ArtifactType: at, Layers: [][]byte{sourcetest.FakeBundle(i)}}
				want[sourcetest.PushReferrer(t, reg.Host, image, r).String()] = r
			}
			// Another kind of referrer, and another image's bundle in the
			// same repository.
			sourcetest.PushReferrer(t, reg.Host, image, sourcetest.Referrer{ArtifactType: "application/spdx+json", LayerType: "application/spdx+json", Layers: [][]byte{[]byte("{}")}})
			other := sourcetest.PushImage(t, reg.Host, reg.Host, "team/app")
			sourcetest.PushReferrer(t, reg.Host, other, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(9)}})

			pushed := len(reg.Requests())
			got, err := newTestSource(t).Bundles(context.Background(), image)
			if err != nil {
				t.Fatalf("Bundles: %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d bundles %v, want %d", len(got), bundleDigests(got), len(want))
			}
			for _, b := range got {
				_, d, _ := strings.Cut(b.Origin, "@")
				w, ok := want[d]
				if !ok {
					t.Fatalf("unexpected bundle %+v", b)
				}
				if !bytes.Equal(b.JSON, w.Layers[0]) || b.MediaType != w.ArtifactType || b.ArtifactType != w.ArtifactType ||
					b.Attached != image.DigestStr() || b.Origin != "referrer "+image.Context().String()+"@"+d {
					t.Errorf("bundle %+v, want JSON %s, types %s", b, w.Layers[0], w.ArtifactType)
				}
			}

			api, fallback := false, false
			for _, r := range reg.Requests()[pushed:] {
				api = api || strings.HasPrefix(r, "GET ") && strings.Contains(r, "/referrers/"+image.DigestStr())
				fallback = fallback || strings.HasPrefix(r, "GET ") && strings.Contains(r, "/manifests/sha256-")
			}
			if mode.opts != nil && (!api || fallback) {
				t.Errorf("referrers API registry: API asked %v, fallback tag asked %v", api, fallback)
			}
			if mode.opts == nil && !fallback {
				t.Error("registry without the referrers API: the fallback tag was not asked")
			}
		})
	}
}

// The manifest itself decides: a listing that claims the bundle type for a
// manifest of another type, or lists another image's bundle or a manifest
// that is gone, adds nothing.
func TestBundlesSelectedByOwnManifest(t *testing.T) {
	for _, mode := range referrerModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := sourcetest.NewRegistry(t, mode.opts...)
			image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
			other := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
			good := sourcetest.PushReferrer(t, reg.Host, image, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(1)}})
			sbom := sourcetest.PushReferrer(t, reg.Host, image, sourcetest.Referrer{ArtifactType: "application/spdx+json", LayerType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(2)}})
			foreign := sourcetest.PushReferrer(t, reg.Host, other, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(3)}})
			gone := digestOf([]byte("a manifest that was never pushed"))

			reg.SetRewrite(func(r *http.Request, body []byte) []byte {
				if !listingPath(r, image) {
					return body
				}
				var idx map[string]any
				if err := json.Unmarshal(body, &idx); err != nil {
					t.Errorf("listing: %v", err)
					return body
				}
				ms, _ := idx["manifests"].([]any)
				for _, m := range ms {
					m.(map[string]any)["artifactType"] = ocimaterial.BundleMediaTypeV03Alt
				}
				for _, h := range []v1.Hash{foreign, gone} {
					ms = append(ms, map[string]any{"mediaType": ocimaterial.MediaTypeOCIManifest, "size": 500, "digest": h.String(), "artifactType": ocimaterial.BundleMediaTypeV03Alt})
				}
				idx["manifests"] = ms
				out, _ := json.Marshal(idx)
				return out
			})
			pushed := len(reg.Requests())
			got, err := newTestSource(t).Bundles(context.Background(), image)
			if err != nil {
				t.Fatalf("Bundles: %v", err)
			}
			if d := bundleDigests(got); !slices.Equal(d, sortedDigests(good)) {
				t.Fatalf("bundles %v, want only %s", d, good)
			}
			// Skipped because of what their manifests say, not unasked.
			reqs := strings.Join(reg.Requests()[pushed:], "\n")
			for _, h := range []v1.Hash{sbom, foreign, gone} {
				if !strings.Contains(reqs, "GET /v2/app/manifests/"+h.String()) {
					t.Errorf("manifest %s was not fetched", h)
				}
			}
		})
	}
}

func TestBundlesNone(t *testing.T) {
	for _, mode := range referrerModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := sourcetest.NewRegistry(t, mode.opts...)
			image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
			src := newTestSource(t)
			check := func(what string, image name.Digest) {
				t.Helper()
				got, err := src.Bundles(context.Background(), image)
				if err != nil || got == nil || len(got) != 0 {
					t.Fatalf("%s: %#v, %v; want an empty non-nil slice", what, got, err)
				}
			}
			check("no referrers", image)
			unknown, _ := name.NewDigest(reg.Host + "/nowhere@" + image.DigestStr())
			check("unknown repository", unknown)
			sourcetest.PushReferrer(t, reg.Host, image, sourcetest.Referrer{ArtifactType: "application/spdx+json", Layers: [][]byte{[]byte("{}")}})
			check("only other referrers", image)
		})
	}
}

func TestBundlesLimits(t *testing.T) {
	for _, mode := range referrerModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := sourcetest.NewRegistry(t, mode.opts...)
			image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
			for i := range 3 {
				sourcetest.PushReferrer(t, reg.Host, image, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(i)}})
			}
			tests := []struct {
				name    string
				limits  ocimaterial.Limits
				rewrite func(r *http.Request, body []byte) []byte
			}{
				{name: "bundle larger than limit", limits: ocimaterial.Limits{BundleBytes: 32}},
				{name: "listing larger than limit", limits: ocimaterial.Limits{ManifestBytes: 4096},
					rewrite: func(r *http.Request, body []byte) []byte {
						if listingPath(r, image) {
							return append(body, bytes.Repeat([]byte(" "), 5000)...)
						}
						return body
					}},
				{name: "manifest larger than the listing says", limits: ocimaterial.Limits{ManifestBytes: 4096},
					rewrite: func(r *http.Request, body []byte) []byte {
						if strings.Contains(r.URL.Path, "/manifests/sha256:") && !strings.HasSuffix(r.URL.Path, image.DigestStr()) {
							return append(body, bytes.Repeat([]byte(" "), 5000)...)
						}
						return body
					}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					reg.SetRewrite(tc.rewrite)
					defer reg.SetRewrite(nil)
					_, err := newTestSource(t, WithLimits(tc.limits)).Bundles(context.Background(), image)
					if !errors.Is(err, ErrLimit) {
						t.Fatalf("err = %v, want ErrLimit", err)
					}
				})
			}
			// Referrers past the limit are skipped, not fatal.
			if got, err := newTestSource(t, WithLimits(ocimaterial.Limits{Referrers: 2})).Bundles(context.Background(), image); err != nil || len(got) != 2 {
				t.Fatalf("over the referrers limit: %d bundles, %v; want the first 2", len(got), err)
			}
			got, err := newTestSource(t, WithLimits(ocimaterial.Limits{Referrers: 3, BundleBytes: 128})).Bundles(context.Background(), image)
			if err != nil || len(got) != 3 {
				t.Fatalf("within limits: %d bundles, %v", len(got), err)
			}
		})
	}
}

// The default bounds hold against a registry that lists more referrers
// than a node should fetch.
func TestBundlesDefaultReferrersLimit(t *testing.T) {
	reg := sourcetest.NewRegistry(t, sourcetest.WithReferrers())
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	for i := range ocimaterial.DefaultReferrers + 1 {
		sourcetest.PushReferrer(t, reg.Host, image, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(i)}})
	}
	before := reg.ManifestGets.Load()
	got, err := newTestSource(t).Bundles(context.Background(), image)
	if err != nil || len(got) != ocimaterial.DefaultReferrers {
		t.Fatalf("%d referrers: %d bundles, %v; want the first %d", ocimaterial.DefaultReferrers+1, len(got), err, ocimaterial.DefaultReferrers)
	}
	if n := reg.ManifestGets.Load() - before; n != ocimaterial.DefaultReferrers {
		t.Errorf("%d referrer manifests fetched, want %d: the rest are not fetched", n, ocimaterial.DefaultReferrers)
	}
}

// Content that does not match what names it, or a bundle manifest of the
// wrong shape, is an error, never a bundle and never "none".
func TestBundlesBadContent(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	tests := []struct {
		name     string
		referrer sourcetest.Referrer
		hook     func(w http.ResponseWriter, r *http.Request) bool
	}{
		{name: "two layers", referrer: sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(1), sourcetest.FakeBundle(2)}}},
		{name: "no layer", referrer: sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt}},
		{name: "layer not a bundle", referrer: sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, LayerType: "application/json", Layers: [][]byte{sourcetest.FakeBundle(1)}}},
		{name: "blob does not match its digest", referrer: sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(1)}},
			hook: func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
					b := sourcetest.FakeBundle(7)
					w.Header().Set("Content-Length", fmt.Sprint(len(b)))
					w.Write(b)
					return true
				}
				return false
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
			sourcetest.PushReferrer(t, reg.Host, image, tc.referrer)
			reg.SetHook(tc.hook)
			defer reg.SetHook(nil)
			got, err := newTestSource(t).Bundles(context.Background(), image)
			if err == nil || errors.Is(err, ErrUnreachable) {
				t.Fatalf("got %+v, %v; want a failure that is not ErrUnreachable", got, err)
			}
		})
	}
}

func TestBundlesUnreachable(t *testing.T) {
	dead, _ := name.NewDigest(sourcetest.DeadHost(t) + "/app@sha256:" + strings.Repeat("a", 64))
	if _, err := newTestSource(t).Bundles(context.Background(), dead); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("registry down: %v, want ErrUnreachable", err)
	}
	for _, mode := range referrerModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := sourcetest.NewRegistry(t, mode.opts...)
			image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
			ref := sourcetest.PushReferrer(t, reg.Host, image, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(1)}})
			tests := []struct {
				name  string
				match func(r *http.Request) bool
				code  int
				want  error // nil: any error but ErrUnreachable
			}{
				{"listing 503", func(r *http.Request) bool { return listingPath(r, image) }, http.StatusServiceUnavailable, ErrUnreachable},
				{"manifest 503", func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/manifests/"+ref.String()) }, http.StatusServiceUnavailable, ErrUnreachable},
				{"blob 502", func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/") }, http.StatusBadGateway, ErrUnreachable},
				{"listing 403", func(r *http.Request) bool { return listingPath(r, image) }, http.StatusForbidden, nil},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
						if r.Method == http.MethodGet && tc.match(r) {
							http.Error(w, "no", tc.code)
							return true
						}
						return false
					})
					defer reg.SetHook(nil)
					got, err := newTestSource(t).Bundles(context.Background(), image)
					if tc.want != nil && !errors.Is(err, tc.want) {
						t.Fatalf("got %+v, %v; want %v", got, err, tc.want)
					}
					if tc.want == nil && (err == nil || errors.Is(err, ErrUnreachable)) {
						t.Fatalf("got %+v, %v; want a failure that is not ErrUnreachable", got, err)
					}
				})
			}
		})
	}
}

// Referrers through containerd's host configuration: a mirror with the
// "referrers" capability is asked for the API (with the ns parameter); when
// no host has that capability, hosts that may resolve tags are asked for the
// fallback tag only.
func TestBundlesMirror(t *testing.T) {
	upstreamAddr := sourcetest.DeadHost(t)
	tests := []struct {
		name       string
		mirrorOpts []sourcetest.RegistryOption
		toml       string
		wantAPI    bool
	}{
		{"mirror with the referrers API", []sourcetest.RegistryOption{sourcetest.WithReferrers()}, `
server = "http://%[1]s"
[host."http://%[2]s"]
  capabilities = ["pull", "resolve", "referrers"]
`, true},
		{"no host with the referrers capability", nil, `
server = "http://%[1]s"
capabilities = ["pull", "resolve"]
[host."http://%[2]s"]
  capabilities = ["pull", "resolve"]
`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mirror := sourcetest.NewRegistry(t, tc.mirrorOpts...)
			image := sourcetest.PushImage(t, mirror.Host, upstreamAddr, "app")
			stored, _ := name.NewDigest(mirror.Host + "/app@" + image.DigestStr())
			want := sourcetest.PushReferrer(t, mirror.Host, stored, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(1)}})
			dir := sourcetest.WriteHosts(t, t.TempDir(), upstreamAddr, fmt.Sprintf(tc.toml, upstreamAddr, mirror.Host))
			src := newTestSource(t, WithHostsDir(dir))
			pushed := len(mirror.Requests())
			got, err := src.Bundles(context.Background(), image)
			if err != nil || len(got) != 1 || !strings.Contains(got[0].Origin, want.String()) || !strings.HasSuffix(got[0].Origin, "(served by mirror "+mirror.Host+")") {
				t.Fatalf("Bundles via mirror: %+v, %v", got, err)
			}
			api := false
			for _, r := range mirror.Requests()[pushed:] {
				if !strings.HasPrefix(r, "GET ") || r == "GET /v2/" {
					continue
				}
				api = api || strings.Contains(r, "/referrers/")
				if !strings.Contains(r, "ns="+url.QueryEscape(upstreamAddr)) {
					t.Errorf("mirror request without ns parameter: %s", r)
				}
			}
			if api != tc.wantAPI {
				t.Errorf("referrers API asked: %v, want %v", api, tc.wantAPI)
			}

			// Nothing on the mirror and the upstream down: not "none".
			other := sourcetest.PushImage(t, mirror.Host, upstreamAddr, "app")
			if _, err := src.Bundles(context.Background(), other); !errors.Is(err, ErrUnreachable) {
				t.Fatalf("mirror without bundles, upstream down: %v, want ErrUnreachable", err)
			}
		})
	}
}

// N concurrent calls for one digest make one listing request, and the
// kinds do not share flights.
func TestBundlesSingleflight(t *testing.T) {
	reg := sourcetest.NewRegistry(t, sourcetest.WithReferrers())
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	sourcetest.PushReferrer(t, reg.Host, image, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(1)}})
	var listings atomic.Int64
	gate := make(chan struct{})
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if listingPath(r, image) {
			listings.Add(1)
			<-gate
		}
		return false
	})
	src := newTestSource(t)
	const n = 16
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range n {
		wg.Go(func() {
			got, err := src.Bundles(context.Background(), image)
			if err != nil || len(got) != 1 {
				failures.Add(1)
			}
		})
	}
	waitWaiters(t, &src.bundles, image.String(), n)
	// Attestations of the same digest do not wait for the bundles.
	if _, err := src.Attestations(context.Background(), image); err != nil {
		t.Fatalf("Attestations during a bundles flight: %v", err)
	}
	close(gate)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d calls failed", failures.Load())
	}
	if got := listings.Load(); got != 1 {
		t.Fatalf("%d listing requests for %d concurrent calls, want 1", got, n)
	}
}

// The caller owns what it gets: changing it does not change the next
// caller's copy.
func TestBundlesCopied(t *testing.T) {
	reg := sourcetest.NewRegistry(t, sourcetest.WithReferrers())
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	sourcetest.PushReferrer(t, reg.Host, image, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(1)}})
	src := newTestSource(t)
	var wg sync.WaitGroup
	results := make([][]artifact.Bundle, 4)
	for i := range results {
		wg.Go(func() { results[i], _ = src.Bundles(context.Background(), image) })
	}
	wg.Wait()
	for i, r := range results {
		if len(r) != 1 {
			t.Fatalf("call %d: %d bundles", i, len(r))
		}
	}
	results[0][0].JSON[0] = 'X'
	for i, r := range results[1:] {
		if r[0].JSON[0] != '{' {
			t.Fatalf("call %d shares its bundle bytes with call 0", i+1)
		}
	}
}
