package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func layerBytes(t *testing.T, img v1.Image) [][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestRegistryPushPull(t *testing.T) {
	r := NewRegistry(t, RegistryOptions{})
	if host, _, err := net.SplitHostPort(r.Addr); err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr = %q, want 127.0.0.1:PORT", r.Addr)
	}
	img, err := RandomImage(7)
	if err != nil {
		t.Fatal(err)
	}
	before := r.Requests()
	d, err := r.Push(img, "team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := r.Ref("team/app@") + digestOf(t, img).String(); d.String() != want {
		t.Fatalf("Push returned %s, want %s", d, want)
	}
	if r.Requests() <= before {
		t.Fatalf("Requests() did not grow on push: %d -> %d", before, r.Requests())
	}
	for _, ref := range []string{d.String(), r.Ref("team/app:v1")} {
		got := pull(t, ref)
		if digestOf(t, got) != digestOf(t, img) {
			t.Fatalf("pull %s: digest %s, want %s", ref, digestOf(t, got), digestOf(t, img))
		}
		want, have := layerBytes(t, img), layerBytes(t, got)
		if len(want) != len(have) || !bytes.Equal(want[0], have[0]) {
			t.Fatalf("pull %s: layer content differs", ref)
		}
	}
}

func TestRegistryStopStart(t *testing.T) {
	r := NewRegistry(t, RegistryOptions{})
	img, err := RandomImage(1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Push(img, "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := r.Stop(); err != nil { // idempotent
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("round %d: dial %s after Stop succeeded", round, r.Addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("round %d: dial after Stop: %v, want connection refused", round, err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		if got := digestOf(t, pull(t, d.String())); got.String() != d.DigestStr() {
			t.Fatalf("round %d: after Start, digest %s, want %s", round, got, d.DigestStr())
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); !errors.Is(err, ErrRegistryClosed) {
		t.Fatalf("Start after Close: %v, want ErrRegistryClosed", err)
	}
}

func TestRegistryReferrersOption(t *testing.T) {
	for _, tc := range []struct {
		referrers bool
		want      int
	}{
		{referrers: true, want: http.StatusOK},
		{referrers: false, want: http.StatusNotFound},
	} {
		t.Run(fmt.Sprint("referrers=", tc.referrers), func(t *testing.T) {
			r := NewRegistry(t, RegistryOptions{Referrers: tc.referrers})
			img, err := RandomImage(3)
			if err != nil {
				t.Fatal(err)
			}
			d, err := r.Push(img, "app:v1")
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get("http://" + r.Addr + "/v2/app/referrers/" + d.DigestStr())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("GET referrers: status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestRegistryTagCopyDelete(t *testing.T) {
	r := NewRegistry(t, RegistryOptions{})
	a, err := RandomImage(10)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RandomImage(11)
	if err != nil {
		t.Fatal(err)
	}
	da, err := r.Push(a, "app:a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Push(b, "app:b"); err != nil {
		t.Fatal(err)
	}

	// Tag: "app:b" now names a.
	if err := r.Tag(da, "b"); err != nil {
		t.Fatal(err)
	}
	if got := digestOf(t, pull(t, r.Ref("app:b"))); got.String() != da.DigestStr() {
		t.Fatalf("app:b -> %s after Tag, want %s", got, da.DigestStr())
	}

	// CopyManifest into another repository, which has none of the blobs.
	if err := r.CopyManifest(da.String(), r.Ref("other:copied")); err != nil {
		t.Fatal(err)
	}
	copied := pull(t, r.Ref("other:copied"))
	if digestOf(t, copied).String() != da.DigestStr() {
		t.Fatalf("copy has digest %s, want %s", digestOf(t, copied), da.DigestStr())
	}
	if !bytes.Equal(layerBytes(t, copied)[0], layerBytes(t, a)[0]) {
		t.Fatal("copied image's layer differs")
	}
	// Relative references work too.
	if err := r.CopyManifest("app:a", "other:relative"); err != nil {
		t.Fatal(err)
	}
	pull(t, r.Ref("other:relative"))

	// Delete a tag: it is gone, the digest stays.
	if err := r.Delete(r.Ref("other:copied")); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(r.Ref("other:copied"))
	_, err = remote.Get(ref)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
		t.Fatalf("get deleted tag: %v, want 404", err)
	}
	pull(t, r.Ref("other@"+da.DigestStr()))

	// A digest of another registry is refused.
	foreign, _ := name.NewDigest("127.0.0.2:5000/app@" + da.DigestStr())
	if err := r.Tag(foreign, "x"); err == nil {
		t.Fatal("Tag of a foreign digest succeeded")
	}
}

func TestRegistryPushIndex(t *testing.T) {
	r := NewRegistry(t, RegistryOptions{})
	var children []v1.Image
	for i := range 3 {
		img, err := RandomImage(int64(100 + i))
		if err != nil {
			t.Fatal(err)
		}
		children = append(children, img)
	}
	idx, err := Index(children...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.PushIndex(idx, "multi:v1")
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(r.Ref("multi:v1"))
	got, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := got.Digest()
	if h.String() != d.DigestStr() {
		t.Fatalf("index digest %s, want %s", h, d.DigestStr())
	}
	for _, c := range children {
		pull(t, r.Ref("multi@"+digestOf(t, c).String()))
	}
}

// rawManifest is a Taggable for a manifest written by hand.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

func TestRegistryReferrersArtifactType(t *testing.T) {
	r := NewRegistry(t, RegistryOptions{Referrers: true})
	img, err := RandomImage(5)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Push(img, "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	size, _ := img.Size()
	mt, _ := img.MediaType()
	const empty = `{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}`
	for i, at := range []string{"application/vnd.example.a", "application/vnd.example.b", ""} {
		body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[],%s"subject":{"mediaType":%q,"size":%d,"digest":%q},"annotations":{"n":"%d"}}`,
			empty, map[bool]string{true: fmt.Sprintf(`"artifactType":%q,`, at)}[at != ""], mt, size, d.DigestStr(), i)
		ref, _ := name.ParseReference(r.Ref(fmt.Sprintf("app:ref%d", i)))
		if err := remote.Put(ref, rawManifest{[]byte(body), types.OCIManifestSchema1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"", []string{"application/vnd.example.a", "application/vnd.example.b", "application/vnd.oci.empty.v1+json"}},
		{"application/vnd.example.b", []string{"application/vnd.example.b"}},
		{"application/vnd.example.none", nil},
	} {
		u := "http://" + r.Addr + "/v2/app/referrers/" + d.DigestStr()
		if tc.filter != "" {
			u += "?artifactType=" + tc.filter
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var idx v1.IndexManifest
		err = json.NewDecoder(resp.Body).Decode(&idx)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("filter %q: status %d, %v", tc.filter, resp.StatusCode, err)
		}
		var got []string
		for _, m := range idx.Manifests {
			got = append(got, string(m.ArtifactType))
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("filter %q: artifact types %q, want %q", tc.filter, got, tc.want)
		}
		if applied := resp.Header.Get("OCI-Filters-Applied"); (tc.filter != "") != (applied == "artifactType") {
			t.Errorf("filter %q: OCI-Filters-Applied %q", tc.filter, applied)
		}
	}
}
