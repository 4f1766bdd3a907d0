package source

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/containerd/platforms"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sealgate/sealgate/plugin/artifact"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
	"github.com/sealgate/sealgate/plugin/source/sourcetest"
)

func TestSignaturesFound(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "team/app")
	key := sourcetest.NewKey(t)
	payload := sourcetest.SimpleSigning(image)
	other := []byte(`{"critical":{},"optional":{"n":2}}`)
	want := []sourcetest.Sig{
		{Payload: payload, Signature: sourcetest.SignWithKey(t, key, payload),
			Certificate: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
			Chain:       "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
			Bundle:      `{"SignedEntryTimestamp":"AAAA","Payload":{"logIndex":7}}`,
			Timestamp:   `{"SignedRFC3161Timestamp":"MEUC"}`},
		{Payload: other, Signature: sourcetest.SignWithKey(t, key, other)},
	}
	sourcetest.PushSignatures(t, reg.Host, image, want...)

	src := newTestSource(t)
	got, err := src.Signatures(context.Background(), image)
	if err != nil {
		t.Fatalf("Signatures: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d signatures, want %d", len(got), len(want))
	}
	tag, _ := SignatureTag(image)
	for i, w := range want {
		g := got[i]
		if !bytes.Equal(g.Payload, w.Payload) {
			t.Errorf("sig %d payload = %q, want %q", i, g.Payload, w.Payload)
		}
		if !bytes.Equal(g.Signature, w.Signature) {
			t.Errorf("sig %d signature bytes differ", i)
		}
		sum := sha256.Sum256(g.Payload)
		if !ecdsa.VerifyASN1(&key.PublicKey, sum[:], g.Signature) {
			t.Errorf("sig %d does not verify over its payload", i)
		}
		if string(g.Certificate) != w.Certificate || string(g.Chain) != w.Chain || string(g.RekorBundle) != w.Bundle ||
			string(g.Timestamp) != w.Timestamp {
			t.Errorf("sig %d annotations = %q %q %q %q", i, g.Certificate, g.Chain, g.RekorBundle, g.Timestamp)
		}
		if g.Attached != image.DigestStr() {
			t.Errorf("sig %d Attached = %q, want %q", i, g.Attached, image.DigestStr())
		}
		if wantOrigin := fmt.Sprintf("%s layer %d", tag, i); g.Origin != wantOrigin {
			t.Errorf("sig %d Origin = %q, want %q", i, g.Origin, wantOrigin)
		}
	}
	if !strings.HasSuffix(tag.TagStr(), ".sig") || !strings.HasPrefix(tag.TagStr(), "sha256-") {
		t.Errorf("signature tag %q", tag.TagStr())
	}
}

func TestSignaturesBadBase64Kept(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	sourcetest.PushSignatures(t, reg.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), RawB64: "!!not base64!!"})
	got, err := newTestSource(t).Signatures(context.Background(), image)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Signature) != 0 || !strings.Contains(got[0].Origin, "not valid base64") {
		t.Fatalf("got %+v, want one signature with no signature bytes and the reason in Origin", got)
	}
}

func TestSignaturesNone(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	got, err := newTestSource(t).Signatures(context.Background(), image)
	if err != nil {
		t.Fatalf("Signatures: %v", err)
	}
	if got == nil || len(got) != 0 {
		t.Fatalf("got %#v, want an empty non-nil slice", got)
	}
	// An unknown repository (NAME_UNKNOWN) is no signatures as well.
	d, _ := name.NewDigest(reg.Host + "/nowhere@" + image.DigestStr())
	if got, err := newTestSource(t).Signatures(context.Background(), d); err != nil || len(got) != 0 {
		t.Fatalf("unknown repository: %v, %v", got, err)
	}
}

func TestDescribe(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	img1, _ := random.Image(128, 1)
	img2, _ := random.Image(128, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: img1, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: img2, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	ref, _ := name.ParseReference(reg.Host + "/multi:latest")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	d1, _ := img1.Digest()
	d2, _ := img2.Digest()
	src := newTestSource(t)

	image, _ := name.NewDigest(reg.Host + "/multi@" + idxDigest.String())
	got, err := src.Describe(context.Background(), image)
	if err != nil {
		t.Fatalf("Describe index: %v", err)
	}
	want := artifact.Manifest{Digest: idxDigest.String(), MediaType: string(types.OCIImageIndex), Children: []artifact.Child{
		{Digest: d1.String(), Platform: "linux/amd64"},
		{Digest: d2.String(), Platform: "linux/arm64/v8"},
	}}
	if !manifestEqual(got, want) {
		t.Fatalf("Describe index = %+v, want %+v", got, want)
	}
	if c, err := got.PlatformChild(platforms.Only(platforms.MustParse("linux/arm64"))); !got.IsIndex() || c != d2.String() || err != nil {
		t.Errorf("index helpers disagree: %+v", got)
	}

	child, _ := name.NewDigest(reg.Host + "/multi@" + d1.String())
	got, err = src.Describe(context.Background(), child)
	if err != nil {
		t.Fatalf("Describe manifest: %v", err)
	}
	mt, _ := img1.MediaType()
	if got.MediaType != string(mt) || got.Digest != d1.String() || len(got.Children) != 0 || got.IsIndex() {
		t.Fatalf("Describe manifest = %+v", got)
	}

	missing, _ := name.NewDigest(reg.Host + "/multi@sha256:" + strings.Repeat("0", 64))
	if _, err := src.Describe(context.Background(), missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Describe missing: %v, want ErrNotFound", err)
	}
}

func manifestEqual(a, b artifact.Manifest) bool {
	if a.Digest != b.Digest || a.MediaType != b.MediaType || len(a.Children) != len(b.Children) {
		return false
	}
	for i := range a.Children {
		if a.Children[i].Digest != b.Children[i].Digest || a.Children[i].Platform != b.Children[i].Platform {
			return false
		}
	}
	return true
}

// The registry answers a digest with other bytes: Describe must refuse them.
func TestDescribeDigestMismatch(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	other := sourcetest.PushImage(t, reg.Host, reg.Host, "app2")
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/app/manifests/"+image.DigestStr() {
			return false
		}
		r.URL.Path = "/v2/app2/manifests/" + other.DigestStr()
		return false // the registry serves app2's manifest instead
	})
	_, err := newTestSource(t).Describe(context.Background(), image)
	if err == nil {
		t.Fatal("Describe accepted a manifest that does not hash to the digest")
	}
	if errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNotFound) {
		t.Fatalf("digest mismatch classified as %v", err)
	}
}

// A signature blob whose bytes do not match its descriptor is refused.
func TestSignaturesBlobMismatch(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	payload := sourcetest.SimpleSigning(image)
	sourcetest.PushSignatures(t, reg.Host, image, sourcetest.Sig{Payload: payload, Signature: []byte("sig")})
	forged := bytes.Replace(payload, []byte("sha256:"), []byte("sha256!"), 1)
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return false
		}
		w.Write(forged)
		return true
	})
	_, err := newTestSource(t).Signatures(context.Background(), image)
	if err == nil || errors.Is(err, ErrUnreachable) {
		t.Fatalf("Signatures with a forged blob: %v", err)
	}
}

func TestLimits(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	big := bytes.Repeat([]byte("x"), 2048)
	sourcetest.PushSignatures(t, reg.Host, image,
		sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("a")},
		sourcetest.Sig{Payload: big, Signature: []byte("b"), Certificate: string(bytes.Repeat([]byte("c"), 4096))},
		sourcetest.Sig{Payload: []byte("{}"), Signature: []byte("c")},
	)
	tag, _ := SignatureTag(image)
	tagPath := "/v2/app/manifests/" + tag.TagStr()

	tests := []struct {
		name   string
		limits ocimaterial.Limits
		hook   func(w http.ResponseWriter, r *http.Request) bool
		// notLimit: any error but ErrUnreachable will do.
		notLimit bool
	}{
		{name: "manifest larger than limit", limits: ocimaterial.Limits{ManifestBytes: 1024}},
		{name: "streamed manifest without length", limits: ocimaterial.Limits{ManifestBytes: 64 << 10},
			hook: func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != tagPath {
					return false
				}
				w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
				w.WriteHeader(http.StatusOK)
				for range 100 { // 100 KiB, chunked
					w.Write(bytes.Repeat([]byte(" "), 1024))
					w.(http.Flusher).Flush()
				}
				return true
			}},
		// The descriptor's size bounds the read: more bytes than it says are
		// a mismatch, found before any limit is reached.
		{name: "streamed blob without length", limits: ocimaterial.Limits{}, notLimit: true,
			hook: func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.Contains(r.URL.Path, "/blobs/") {
					return false
				}
				w.WriteHeader(http.StatusOK)
				for range 300 { // 300 KiB > 256 KiB default
					w.Write(bytes.Repeat([]byte("y"), 1024))
					w.(http.Flusher).Flush()
				}
				return true
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg.SetHook(tc.hook)
			defer reg.SetHook(nil)
			_, err := newTestSource(t, WithLimits(tc.limits)).Signatures(context.Background(), image)
			if tc.notLimit {
				if err == nil || errors.Is(err, ErrUnreachable) {
					t.Fatalf("err = %v, want a failure", err)
				}
				return
			}
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("err = %v, want ErrLimit", err)
			}
		})
	}
	// Junk is skipped, not fatal: a layer over the payload limit, layers
	// past the count limit; the others are read.
	for _, tc := range []struct {
		lim  ocimaterial.Limits
		want int
	}{{ocimaterial.Limits{PayloadBytes: 1024}, 2}, {ocimaterial.Limits{Signatures: 2}, 2}} {
		if got, err := newTestSource(t, WithLimits(tc.lim)).Signatures(context.Background(), image); err != nil || len(got) != tc.want {
			t.Errorf("limits %+v: %d signatures, %v; want %d", tc.lim, len(got), err, tc.want)
		}
	}
	// Within the limits, the same signatures are read.
	got, err := newTestSource(t).Signatures(context.Background(), image)
	if err != nil || len(got) != 3 {
		t.Fatalf("within limits: %d signatures, %v", len(got), err)
	}
}

func TestDescribeLimit(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	_, err := newTestSource(t, WithLimits(ocimaterial.Limits{ManifestBytes: 64})).Describe(context.Background(), image)
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("err = %v, want ErrLimit", err)
	}
}

func TestUnreachable(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	reg.Srv.Close() // the listener is gone: connection refused
	src := newTestSource(t)
	if _, err := src.Signatures(context.Background(), image); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Signatures: %v, want ErrUnreachable", err)
	}
	if _, err := src.Describe(context.Background(), image); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Describe: %v, want ErrUnreachable", err)
	}
	if _, err := src.Signatures(context.Background(), image); !strings.Contains(fmt.Sprint(err), "fetch signatures for "+image.String()) {
		t.Fatalf("error does not name the image: %v", err)
	}
}

func TestStatusClassification(t *testing.T) {
	tests := []struct {
		status          int
		wantUnreachable bool
	}{
		{http.StatusInternalServerError, true},
		{http.StatusServiceUnavailable, true},
		{http.StatusTooManyRequests, true},
		{http.StatusForbidden, false},
		{http.StatusUnauthorized, false},
		{http.StatusBadRequest, false},
	}
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.Contains(r.URL.Path, "/manifests/") {
					return false
				}
				http.Error(w, `{"errors":[{"code":"DENIED","message":"no"}]}`, tc.status)
				return true
			})
			defer reg.SetHook(nil)
			_, err := newTestSource(t).Signatures(context.Background(), image)
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, ErrUnreachable); got != tc.wantUnreachable {
				t.Fatalf("unreachable = %v, want %v (%v)", got, tc.wantUnreachable, err)
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	release := make(chan struct{})
	defer close(release)
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	start := time.Now()
	_, err := newTestSource(t, WithTimeout(200*time.Millisecond)).Signatures(context.Background(), image)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s with a 200ms request timeout", d)
	}
}

func TestMirror(t *testing.T) {
	mirror := sourcetest.NewRegistry(t)
	upstreamAddr := sourcetest.DeadHost(t)
	image := sourcetest.PushImage(t, mirror.Host, upstreamAddr, "app")
	sourcetest.PushSignatures(t, mirror.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("s")})
	dir := sourcetest.WriteHosts(t, t.TempDir(), upstreamAddr, fmt.Sprintf(`
server = "http://%s"

[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, upstreamAddr, mirror.Host))
	src := newTestSource(t, WithHostsDir(dir))

	got, err := src.Signatures(context.Background(), image)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0].Signature, []byte("s")) {
		t.Fatalf("Signatures via mirror: %+v, %v", got, err)
	}
	if !strings.HasSuffix(got[0].Origin, "(served by mirror "+mirror.Host+")") {
		t.Errorf("the signature's origin does not name the mirror that served it: %q", got[0].Origin)
	}
	m, err := src.Describe(context.Background(), image)
	if err != nil || m.Digest != image.DigestStr() {
		t.Fatalf("Describe via mirror: %+v, %v", m, err)
	}
	// containerd tells a mirror which registry it stands for.
	for _, r := range mirror.Requests() {
		if strings.HasPrefix(r, "GET ") && strings.Contains(r, "/manifests/") && !strings.Contains(r, "ns="+url.QueryEscape(upstreamAddr)) {
			t.Errorf("mirror request without ns parameter: %s", r)
		}
	}

	// Without signatures on the mirror and the upstream down, absence is not
	// established: unreachable, not "no signatures".
	other := sourcetest.PushImage(t, mirror.Host, upstreamAddr, "app")
	if _, err := src.Signatures(context.Background(), other); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("mirror without signatures, upstream down: %v, want ErrUnreachable", err)
	}
}

func TestMirrorFallsThrough(t *testing.T) {
	upstream := sourcetest.NewRegistry(t)
	mirror := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, upstream.Host, upstream.Host, "app")
	sourcetest.PushSignatures(t, upstream.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("u")})

	tests := []struct {
		name       string
		mirrorHost string
	}{
		{"mirror down", sourcetest.DeadHost(t)},
		{"mirror without the tag", mirror.Host},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := sourcetest.WriteHosts(t, t.TempDir(), upstream.Host, fmt.Sprintf(`
server = "http://%s"
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, upstream.Host, tc.mirrorHost))
			got, err := newTestSource(t, WithHostsDir(dir)).Signatures(context.Background(), image)
			if err != nil || len(got) != 1 || string(got[0].Signature) != "u" {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
	if mirror.TagGets.Load() == 0 {
		t.Error("the mirror was never asked")
	}
}

// A mirror with only "pull" is never asked for the signature tag, but serves
// the payloads.
func TestMirrorCapabilities(t *testing.T) {
	upstream := sourcetest.NewRegistry(t)
	mirror := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, upstream.Host, upstream.Host, "app")
	sig := sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("u")}
	sourcetest.PushSignatures(t, upstream.Host, image, sig)
	sourcetest.PushSignatures(t, mirror.Host, image, sig)
	dir := sourcetest.WriteHosts(t, t.TempDir(), upstream.Host, fmt.Sprintf(`
server = "http://%s"
[host."http://%s"]
  capabilities = ["pull"]
`, upstream.Host, mirror.Host))
	got, err := newTestSource(t, WithHostsDir(dir)).Signatures(context.Background(), image)
	if err != nil || len(got) != 1 {
		t.Fatalf("got %+v, %v", got, err)
	}
	if n := mirror.TagGets.Load(); n != 0 {
		t.Errorf("pull-only mirror was asked for the tag %d times", n)
	}
	if n := mirror.BlobGets.Load(); n == 0 {
		t.Error("pull-only mirror did not serve the payload")
	}
	if n := upstream.BlobGets.Load(); n != 0 {
		t.Errorf("upstream served %d payloads the mirror had", n)
	}
}

// The registry's name is only a key: hosts.toml's server says where it is,
// with path prefixes and override_path as containerd reads them.
func TestServerOverride(t *testing.T) {
	plain := sourcetest.NewRegistry(t)
	prefixed := sourcetest.NewRegistry(t, sourcetest.WithPrefix("/prefix/v2/", "/v2/"))
	overridden := sourcetest.NewRegistry(t, sourcetest.WithPrefix("/custom/api/", "/v2/"))
	tests := []struct {
		name string
		reg  *sourcetest.Registry
		toml string
	}{
		{"server", plain, `server = "http://%s"`},
		{"path prefix", prefixed, `server = "http://%s/prefix"`},
		{"override_path", overridden, "server = \"http://%s/custom/api\"\noverride_path = true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stored := pushImageVia(t, tc.reg, "app")
			image, _ := name.NewDigest("registry.sealgate.invalid/app@" + stored.DigestStr())
			pushSignaturesVia(t, tc.reg, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("o")})
			dir := sourcetest.WriteHosts(t, t.TempDir(), "registry.sealgate.invalid", fmt.Sprintf(tc.toml, tc.reg.Host))
			src := newTestSource(t, WithHostsDir(dir))
			got, err := src.Signatures(context.Background(), image)
			if err != nil || len(got) != 1 || string(got[0].Signature) != "o" {
				t.Fatalf("Signatures: %+v, %v", got, err)
			}
			if _, err := src.Describe(context.Background(), image); err != nil {
				t.Fatalf("Describe: %v", err)
			}
		})
	}
}

// TestAPIRootNotFound: a host whose API root answers 404 (containerd never
// asks it). Behind override_path the host is used as containerd uses it;
// otherwise it is a host error, never "no signatures".
func TestAPIRootNotFound(t *testing.T) {
	for _, override := range []bool{true, false} {
		t.Run(fmt.Sprintf("override_path=%v", override), func(t *testing.T) {
			reg := sourcetest.NewRegistry(t, sourcetest.WithPrefix("/custom/api/", "/v2/"))
			stored := pushImageVia(t, reg, "app")
			image, _ := name.NewDigest("registry.sealgate.invalid/app@" + stored.DigestStr())
			pushSignaturesVia(t, reg, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("o")})
			reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet && (r.URL.Path == "/v2/" || r.URL.Path == "/v2") {
					http.NotFound(w, r)
					return true
				}
				return false
			})
			toml := fmt.Sprintf("server = \"http://%s/custom/api\"\noverride_path = true", reg.Host)
			if !override {
				// The API root is /custom/api/v2/ here, which the
				// prefix rule does not serve: a misconfigured host.
				toml = fmt.Sprintf("server = \"http://%s/custom/api\"", reg.Host)
			}
			dir := sourcetest.WriteHosts(t, t.TempDir(), "registry.sealgate.invalid", toml)
			src := newTestSource(t, WithHostsDir(dir))
			got, err := src.Signatures(context.Background(), image)
			if override {
				if err != nil || len(got) != 1 {
					t.Fatalf("override_path host whose API root answers 404: %+v, %v", got, err)
				}
				return
			}
			if err == nil || errors.Is(err, ErrNotFound) || len(got) != 0 {
				t.Fatalf("a host without a registry API read as \"no signatures\": %+v, %v", got, err)
			}
		})
	}
}

// pushImageVia and pushSignaturesVia write through the prefix a registry
// expects, by pushing with a transport that adds it.
func pushImageVia(t *testing.T, reg *sourcetest.Registry, repo string) name.Digest {
	t.Helper()
	img, _ := random.Image(128, 1)
	h, _ := img.Digest()
	ref, _ := name.ParseReference(reg.Host + "/" + repo + ":latest")
	if err := remote.Write(ref, img, remote.WithTransport(prefixTransport{reg.PathPrefix()})); err != nil {
		t.Fatal(err)
	}
	d, _ := name.NewDigest(reg.Host + "/" + repo + "@" + h.String())
	return d
}

func pushSignaturesVia(t *testing.T, reg *sourcetest.Registry, image name.Digest, sigs ...sourcetest.Sig) {
	t.Helper()
	tag, _ := SignatureTag(image)
	ref, _ := name.ParseReference(reg.Host + "/" + image.RepositoryStr() + ":" + tag.TagStr())
	if err := remote.Write(ref, sourcetest.SignatureImage(t, sigs...), remote.WithTransport(prefixTransport{reg.PathPrefix()})); err != nil {
		t.Fatal(err)
	}
}

type prefixTransport struct{ prefix string }

func (p prefixTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if p.prefix != "" && strings.HasPrefix(r.URL.Path, "/v2/") {
		r = r.Clone(r.Context())
		r.URL.Path = p.prefix + strings.TrimPrefix(r.URL.Path, "/v2/")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TLS settings come from hosts.toml: with the registry's CA the fetch works;
// without it the certificate error is reported, not mistaken for an outage.
func TestHostsTLS(t *testing.T) {
	backend := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, backend.Host, backend.Host, "app")
	sourcetest.PushSignatures(t, backend.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("t")})
	backendURL := backend.Srv.URL
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, backendURL+r.URL.RequestURI(), nil)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		w.Write(buf.Bytes())
	}))
	proxy.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected below
	proxy.StartTLS()
	defer proxy.Close()
	tlsHost := strings.TrimPrefix(proxy.URL, "https://")
	named, _ := name.NewDigest("secure.sealgate.invalid/app@" + image.DigestStr())

	dir := t.TempDir()
	caPath := filepath.Join(dir, "secure.sealgate.invalid", "ca.pem")
	sourcetest.WriteHosts(t, dir, "secure.sealgate.invalid", fmt.Sprintf("server = \"https://%s\"\nca = \"ca.pem\"\n", tlsHost))
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw})
	if err := os.WriteFile(caPath, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := newTestSource(t, WithHostsDir(dir)).Signatures(context.Background(), named)
	if err != nil || len(got) != 1 || string(got[0].Signature) != "t" {
		t.Fatalf("with ca: %+v, %v", got, err)
	}

	noCA := sourcetest.WriteHosts(t, t.TempDir(), "secure.sealgate.invalid", fmt.Sprintf("server = \"https://%s\"\n", tlsHost))
	_, err = newTestSource(t, WithHostsDir(noCA)).Signatures(context.Background(), named)
	if err == nil || errors.Is(err, ErrUnreachable) {
		t.Fatalf("without ca: %v, want a certificate error that is not ErrUnreachable", err)
	}
}

// Editing hosts.toml takes effect on the next call.
func TestHostsReload(t *testing.T) {
	a := sourcetest.NewRegistry(t)
	b := sourcetest.NewRegistry(t)
	stored := sourcetest.PushImage(t, a.Host, a.Host, "app")
	image, _ := name.NewDigest("moving.sealgate.invalid/app@" + stored.DigestStr())
	sourcetest.PushSignatures(t, a.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("a")})
	sourcetest.PushSignatures(t, b.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("b")})
	dir := t.TempDir()
	src := newTestSource(t, WithHostsDir(dir))
	for i, want := range []struct{ host, sig string }{{a.Host, "a"}, {b.Host, "b"}} {
		// The comment changes the file's size too, whatever the clock's
		// granularity.
		sourcetest.WriteHosts(t, dir, "moving.sealgate.invalid", fmt.Sprintf("server = %q\n%s\n", "http://"+want.host, strings.Repeat("#", i+1)))
		got, err := src.Signatures(context.Background(), image)
		if err != nil || len(got) != 1 || string(got[0].Signature) != want.sig {
			t.Fatalf("server %s: %+v, %v", want.host, got, err)
		}
	}
}

type staticKeychain struct {
	host string
	auth authn.Authenticator
}

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() == k.host {
		return k.auth, nil
	}
	return authn.Anonymous, nil
}

func TestKeychain(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	sourcetest.PushSignatures(t, reg.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("k")})
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "node" && p == "secret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}`, http.StatusUnauthorized)
		return true
	})
	_, err := newTestSource(t, WithKeychain(staticKeychain{})).Signatures(context.Background(), image)
	if err == nil || errors.Is(err, ErrUnreachable) {
		t.Fatalf("without credentials: %v, want an auth error that is not ErrUnreachable", err)
	}
	kc := staticKeychain{host: reg.Host, auth: &authn.Basic{Username: "node", Password: "secret"}}
	got, err := newTestSource(t, WithKeychain(kc)).Signatures(context.Background(), image)
	if err != nil || len(got) != 1 {
		t.Fatalf("with credentials: %+v, %v", got, err)
	}
}

// N concurrent calls for one digest make one manifest request.
func TestSingleflight(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	sourcetest.PushSignatures(t, reg.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("f")})
	gate := make(chan struct{})
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/manifests/") {
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
			got, err := src.Signatures(context.Background(), image)
			if err != nil || len(got) != 1 || string(got[0].Signature) != "f" {
				failures.Add(1)
			}
		})
	}
	waitWaiters(t, &src.signatures, image.String(), n)
	close(gate)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d calls failed", failures.Load())
	}
	if got := reg.ManifestGets.Load(); got != 1 {
		t.Fatalf("%d manifest GETs for %d concurrent calls, want 1", got, n)
	}
	// Once done, the next call fetches again (no caching here).
	if _, err := src.Signatures(context.Background(), image); err != nil {
		t.Fatal(err)
	}
	if got := reg.ManifestGets.Load(); got != 2 {
		t.Fatalf("%d manifest GETs after a later call, want 2", got)
	}
}

// A caller whose context ends returns at once; the shared fetch goes on for
// the others, and stops when the last one leaves.
func TestSingleflightCancel(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	gate := make(chan struct{})
	aborted := make(chan struct{}, 1)
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/manifests/") {
			<-gate
		}
		return false
	})
	src := newTestSource(t)
	patientDone := make(chan error, 1)
	go func() {
		_, err := src.Describe(context.Background(), image)
		patientDone <- err
	}()
	waitWaiters(t, &src.describe, image.String(), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := src.Describe(ctx, image); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("impatient caller: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("impatient caller returned after %s", d)
	}
	close(gate)
	if err := <-patientDone; err != nil {
		t.Fatalf("patient caller: %v", err)
	}

	// Everyone gone: the shared request is cancelled. (A new source: the
	// manifest fetched by digest above is kept and would not be asked.)
	src = newTestSource(t)
	arrived := make(chan struct{}, 1)
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/manifests/") {
			arrived <- struct{}{}
			<-r.Context().Done()
			aborted <- struct{}{}
			return true
		}
		return false
	})
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel2()
	}()
	if _, err := src.Describe(ctx2, image); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	select {
	case <-aborted:
	case <-time.After(5 * time.Second):
		t.Fatal("the shared request went on after every caller left")
	}
}

func waitWaiters(t *testing.T, g *flightGroup, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		g.mu.Lock()
		f := g.flights[key]
		got := 0
		if f != nil {
			got = f.waiters
		}
		g.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Errorf("never saw %d waiters for %s", n, key)
}

func TestNewRegistryOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		name    string
		opts    []Option
		wantErr bool
	}{
		{"defaults", nil, false},
		{"missing hosts dir is fine", []Option{WithHostsDir(filepath.Join(t.TempDir(), "none"))}, false},
		{"hosts dir is a file", []Option{WithHostsDir(file)}, true},
		{"empty hosts dir", []Option{WithHostsDir("")}, true},
		{"zero timeout", []Option{WithTimeout(0)}, true},
		{"negative timeout", []Option{WithTimeout(-time.Second)}, true},
		{"nil keychain", []Option{WithKeychain(nil)}, true},
		{"nil transport", []Option{WithTransport(nil)}, true},
		{"negative limit", []Option{WithLimits(ocimaterial.Limits{PayloadBytes: -1})}, true},
		{"negative envelope limit", []Option{WithLimits(ocimaterial.Limits{EnvelopeBytes: -1})}, true},
		{"negative bundle limit", []Option{WithLimits(ocimaterial.Limits{BundleBytes: -1})}, true},
		{"negative referrers limit", []Option{WithLimits(ocimaterial.Limits{Referrers: -1})}, true},
		{"partial limits", []Option{WithLimits(ocimaterial.Limits{Signatures: 3})}, false},
		{"nil option", []Option{nil}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRegistry(tc.opts...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && (r.limits.ManifestBytes <= 0 || r.limits.PayloadBytes <= 0 || r.limits.Signatures <= 0 ||
				r.limits.EnvelopeBytes <= 0 || r.limits.BundleBytes <= 0 || r.limits.Referrers <= 0) {
				t.Fatalf("limits not defaulted: %+v", r.limits)
			}
		})
	}
}

// WithTransport carries every request, loopback HTTPS-then-HTTP fallback
// included.
func TestWithTransport(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	var n atomic.Int64
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})
	if _, err := newTestSource(t, WithTransport(rt)).Describe(context.Background(), image); err != nil {
		t.Fatal(err)
	}
	if n.Load() == 0 {
		t.Fatal("the transport was not used")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func BenchmarkSignatures(b *testing.B) {
	reg := sourcetest.NewRegistry(b)
	image := sourcetest.PushImage(b, reg.Host, reg.Host, "app")
	key := sourcetest.NewKey(b)
	payload := sourcetest.SimpleSigning(image)
	sourcetest.PushSignatures(b, reg.Host, image, sourcetest.Sig{Payload: payload, Signature: sourcetest.SignWithKey(b, key, payload)})
	src := newTestSource(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		sigs, err := src.Signatures(ctx, image)
		if err != nil || len(sigs) != 1 {
			b.Fatalf("%d, %v", len(sigs), err)
		}
	}
}

// How registry hosts map onto go-containerregistry names, without a network.
func TestTargets(t *testing.T) {
	h := strings.Repeat("ab", 32)
	mirrors := sourcetest.WriteHosts(t, t.TempDir(), "docker.io", `
server = "https://registry-1.docker.io"
[host."https://mirror.example:5000/cache"]
  capabilities = ["pull", "resolve"]
`)
	tests := []struct {
		name, dir, image string
		want             []string // "ggcr repository (rewritten from) -> scheme://host path ns"
	}{
		{"docker hub", "", "nginx@sha256:" + h, []string{
			"index.docker.io/library/nginx (index.docker.io) -> https://registry-1.docker.io /v2 ns="}},
		{"docker hub mirror", mirrors, "docker.io/library/nginx@sha256:" + h, []string{
			"mirror.example:5000/library/nginx (mirror.example:5000) -> https://mirror.example:5000 /cache/v2 ns=docker.io",
			"index.docker.io/library/nginx (index.docker.io) -> https://registry-1.docker.io /v2 ns="}},
		{"loopback", "", "127.0.0.1:5000/a/b@sha256:" + h, []string{
			"127.0.0.1:5000/a/b (127.0.0.1:5000) -> https://127.0.0.1:5000 /v2 ns="}}, // HTTPS first, HTTP fallback, as containerd
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir == "" {
				dir = t.TempDir()
			}
			src := newTestSource(t, WithHostsDir(dir))
			image, _ := name.NewDigest(tc.image)
			targets, err := src.targets(image.Context())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tg := range targets {
				got = append(got, fmt.Sprintf("%s (%s) -> %s://%s %s ns=%s", tg.repo, tg.tr.from, tg.tr.scheme, tg.tr.host, tg.tr.path, tg.tr.ns))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("targets:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestSkippedCounted: junk left out is counted.
func TestSkippedCounted(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	sourcetest.PushSignatures(t, reg.Host, image,
		sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("a")},
		sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("b")},
		sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("c")},
	)
	src := newTestSource(t, WithLimits(ocimaterial.Limits{Signatures: 1}))
	got, err := src.Signatures(context.Background(), image)
	if err != nil || len(got) != 1 {
		t.Fatalf("%d signatures, %v", len(got), err)
	}
	if n := src.Skipped(); n != 2 {
		t.Errorf("Skipped = %d, want 2 (layers past the limit)", n)
	}
}
