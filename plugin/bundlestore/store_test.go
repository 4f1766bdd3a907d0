package bundlestore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/artifact"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
	"github.com/sealgate/sealgate/plugin/source"
	"github.com/sealgate/sealgate/plugin/source/sourcetest"
)

// material is everything a source has for one image.
type material struct {
	sigs    []artifact.Signature
	atts    []artifact.Attestation
	bundles []artifact.Bundle
	desc    artifact.Manifest
	descErr error
}

func fetchAll(t *testing.T, src source.Source, image name.Digest) material {
	t.Helper()
	ctx := context.Background()
	var m material
	var err error
	if m.sigs, err = src.Signatures(ctx, image); err != nil {
		t.Fatalf("Signatures: %v", err)
	}
	if m.atts, err = src.Attestations(ctx, image); err != nil {
		t.Fatalf("Attestations: %v", err)
	}
	if m.bundles, err = src.Bundles(ctx, image); err != nil {
		t.Fatalf("Bundles: %v", err)
	}
	m.desc, m.descErr = src.Describe(ctx, image)
	return m
}

// sameMaterial fails unless got carries exactly want's material, byte for
// byte and in order; only Origin may differ.
func sameMaterial(t *testing.T, what string, got, want material) {
	t.Helper()
	if len(got.sigs) != len(want.sigs) || len(got.atts) != len(want.atts) || len(got.bundles) != len(want.bundles) {
		t.Fatalf("%s: %d/%d/%d signatures/attestations/bundles, want %d/%d/%d", what,
			len(got.sigs), len(got.atts), len(got.bundles), len(want.sigs), len(want.atts), len(want.bundles))
	}
	for i := range want.sigs {
		g, w := got.sigs[i], want.sigs[i]
		g.Origin, w.Origin = "", ""
		if !equalSig(g, w) {
			t.Errorf("%s: signature %d differs:\n got %+v\nwant %+v", what, i, g, w)
		}
	}
	for i := range want.atts {
		g, w := got.atts[i], want.atts[i]
		if !bytes.Equal(g.Envelope, w.Envelope) || !bytes.Equal(g.Certificate, w.Certificate) || !bytes.Equal(g.Chain, w.Chain) ||
			!bytes.Equal(g.RekorBundle, w.RekorBundle) || !bytes.Equal(g.Timestamp, w.Timestamp) || g.Attached != w.Attached {
			t.Errorf("%s: attestation %d differs:\n got %+v\nwant %+v", what, i, g, w)
		}
	}
	// Bundles come in no meaningful order from a registry; the store keeps
	// them by digest.
	byDigest := func(a, b artifact.Bundle) int {
		return compareStrings(sourcetest.DigestOf(a.JSON).String(), sourcetest.DigestOf(b.JSON).String())
	}
	want.bundles = slices.Clone(want.bundles)
	slices.SortFunc(want.bundles, byDigest)
	if !slices.IsSortedFunc(got.bundles, byDigest) {
		t.Errorf("%s: bundles not in digest order", what)
	}
	for i := range want.bundles {
		g, w := got.bundles[i], want.bundles[i]
		if !bytes.Equal(g.JSON, w.JSON) || g.MediaType != w.MediaType || g.ArtifactType != w.ArtifactType || g.Attached != w.Attached {
			t.Errorf("%s: bundle %d differs:\n got %+v\nwant %+v", what, i, g, w)
		}
	}
	if (got.descErr == nil) != (want.descErr == nil) {
		t.Fatalf("%s: Describe error %v, want %v", what, got.descErr, want.descErr)
	}
	if got.desc.Digest != want.desc.Digest || got.desc.MediaType != want.desc.MediaType || !slices.Equal(got.desc.Children, want.desc.Children) {
		t.Errorf("%s: Describe = %+v, want %+v", what, got.desc, want.desc)
	}
}

func equalSig(a, b artifact.Signature) bool {
	return bytes.Equal(a.Payload, b.Payload) && bytes.Equal(a.Signature, b.Signature) && bytes.Equal(a.Certificate, b.Certificate) &&
		bytes.Equal(a.Chain, b.Chain) && bytes.Equal(a.RekorBundle, b.RekorBundle) && bytes.Equal(a.Timestamp, b.Timestamp) &&
		a.Attached == b.Attached
}

// registryFixture is an image with every kind of material, and an index
// whose platform manifest alone is signed.
type registryFixture struct {
	reg          *sourcetest.Registry
	image, index name.Digest
	child        name.Digest
	unsigned     name.Digest
}

func newRegistryFixture(t *testing.T) registryFixture {
	t.Helper()
	reg := sourcetest.NewRegistry(t, sourcetest.WithReferrers())
	f := registryFixture{reg: reg}
	f.image = sourcetest.PushImage(t, reg.Host, reg.Host, "team/app")
	key := sourcetest.NewKey(t)
	p := sourcetest.SimpleSigning(f.image)
	sourcetest.PushSignatures(t, reg.Host, f.image,
		sourcetest.Sig{Payload: p, Signature: sourcetest.SignWithKey(t, key, p),
			Certificate: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
			Chain:       "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
			Bundle:      `{"SignedEntryTimestamp":"AAAA"}`, Timestamp: `{"SignedRFC3161Timestamp":"MEUC"}`},
		sourcetest.Sig{Payload: []byte(`{"critical":{},"optional":{"n":2}}`), Signature: []byte("second")},
	)
	sourcetest.PushAttestations(t, reg.Host, f.image,
		sourcetest.Att{Envelope: sourcetest.Envelope(1), Ann: map[string]string{ocimaterial.AnnotationSignature: "", ocimaterial.AnnotationCertificate: "CERT", ocimaterial.AnnotationBundle: `{"x":1}`}},
		sourcetest.Att{Envelope: sourcetest.Envelope(2)})
	sourcetest.PushReferrer(t, reg.Host, f.image, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV03Alt, Layers: [][]byte{sourcetest.FakeBundle(1)}})
	sourcetest.PushReferrer(t, reg.Host, f.image, sourcetest.Referrer{ArtifactType: ocimaterial.BundleMediaTypeV01, Layers: [][]byte{sourcetest.FakeBundle(2)}})

	idx, err := random.Index(128, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(reg.Host + "/team/multi:latest")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	h, _ := idx.Digest()
	f.index = ref.Context().Digest(h.String())
	im, _ := idx.IndexManifest()
	f.child = ref.Context().Digest(im.Manifests[0].Digest.String())
	sourcetest.PushSignatures(t, reg.Host, f.child, sourcetest.Sig{Payload: sourcetest.SimpleSigning(f.child), Signature: []byte("child")})
	f.unsigned = sourcetest.PushImage(t, reg.Host, reg.Host, "team/unsigned")
	return f
}

func newTestLocal(t *testing.T, opts ...Option) *Store {
	t.Helper()
	l, err := New(filepath.Join(t.TempDir(), "store"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func exportTo(t *testing.T, src source.Source, images ...name.Digest) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Export(context.Background(), src, images, &buf, WithAllowEmpty()); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return buf.Bytes()
}

// TestExportSharedDigest: two repositories hold the same digest, each with
// its own signature. The export carries both, reports each image, and
// after import each repository's signature is there for its own name; an
// image with no material is an error unless asked for.
func TestExportSharedDigest(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	a := sourcetest.PushImage(t, reg.Host, reg.Host, "team/a")
	img, err := remote.Image(a)
	if err != nil {
		t.Fatal(err)
	}
	sourcetest.Write(t, reg.Host+"/team/b:latest", img)
	b := a.Context().Registry.Repo("team", "b").Digest(a.DigestStr())
	pa, pb := sourcetest.SimpleSigning(a), sourcetest.SimpleSigning(b)
	sourcetest.PushSignatures(t, reg.Host, a, sourcetest.Sig{Payload: pa, Signature: []byte("sig-a")})
	sourcetest.PushSignatures(t, reg.Host, b, sourcetest.Sig{Payload: pb, Signature: []byte("sig-b")})
	src := newRegistrySource(t)
	var buf bytes.Buffer
	sums, err := Export(context.Background(), src, []name.Digest{a, b}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 || sums[0].Ref != a.String() || sums[1].Ref != b.String() || sums[0].Signatures != 1 || sums[1].Signatures != 1 {
		t.Fatalf("summaries %+v, want one per image with its signature", sums)
	}
	local := newTestLocal(t)
	if _, err := local.ImportArchive(&buf); err != nil {
		t.Fatal(err)
	}
	for _, img := range []name.Digest{a, b} {
		sigs, err := local.Signatures(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		var payloads []string
		for _, s := range sigs {
			payloads = append(payloads, string(s.Payload))
		}
		if !slices.Contains(payloads, string(sourcetest.SimpleSigning(img))) {
			t.Errorf("%s: its own signature was not carried; payloads %q", img, payloads)
		}
	}

	unsigned := sourcetest.PushImage(t, reg.Host, reg.Host, "team/unsigned")
	if _, err := Export(context.Background(), src, []name.Digest{a, unsigned}, io.Discard); !errors.Is(err, ErrNoMaterial) || !strings.Contains(err.Error(), unsigned.String()) {
		t.Errorf("export of an image without material: %v, want ErrNoMaterial naming it", err)
	}
	if _, err := Export(context.Background(), src, []name.Digest{unsigned}, io.Discard, WithAllowEmpty()); err != nil {
		t.Errorf("--allow-empty: %v", err)
	}
}

// TestLocalRoundTrip: what the registry serves, exported and imported,
// comes back from the store byte for byte, Describe included; an index's
// signed platform manifest travels with it.
func TestLocalRoundTrip(t *testing.T) {
	f := newRegistryFixture(t)
	reg := newRegistrySource(t)
	file := exportTo(t, reg, f.image, f.index, f.unsigned)
	if again := exportTo(t, reg, f.image, f.index, f.unsigned); !bytes.Equal(file, again) {
		t.Error("two exports of the same material differ")
	}

	local := newTestLocal(t)
	sums, err := local.ImportArchive(bytes.NewReader(file))
	if err != nil {
		t.Fatalf("ImportArchive: %v", err)
	}
	want := []ImageSummary{
		{Ref: f.image.String(), Digest: f.image.DigestStr(), Manifest: true, Signatures: 2, Attestations: 2, Bundles: 2},
		{Ref: f.index.String(), Digest: f.index.DigestStr(), Manifest: true},
		{Ref: f.child.String(), Digest: f.child.DigestStr(), Manifest: true, Signatures: 1},
		{Ref: f.unsigned.String(), Digest: f.unsigned.DigestStr(), Manifest: true},
	}
	if !slices.Equal(sums, want) {
		t.Errorf("summaries\n got %+v\nwant %+v", sums, want)
	}

	images := []name.Digest{f.image, f.index, f.child, f.unsigned}
	fromRegistry := map[string]material{}
	for _, img := range images {
		fromRegistry[img.String()] = fetchAll(t, reg, img)
	}
	// A digest the registry does not have cannot be exported.
	gone := f.image.Context().Digest(sourcetest.DigestOf([]byte("never pushed")).String())
	if _, err := Export(context.Background(), reg, []name.Digest{gone}, io.Discard); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("export of a digest the registry lacks: %v, want source.ErrNotFound", err)
	}

	f.reg.Srv.Close() // from here on, only the store
	for _, img := range images {
		t.Run(img.RepositoryStr()+"@"+img.DigestStr()[7:15], func(t *testing.T) {
			got := fetchAll(t, local, img)
			sameMaterial(t, img.String(), got, fromRegistry[img.String()])
			for i, s := range got.sigs {
				if !strings.HasPrefix(s.Origin, "local bundle store "+local.Dir()) {
					t.Errorf("signature %d origin %q", i, s.Origin)
				}
			}
		})
	}
	if len(fromRegistry[f.image.String()].sigs) != 2 || len(fromRegistry[f.child.String()].sigs) != 1 {
		t.Fatal("the fixture lost its material")
	}

	// The caller owns the bytes.
	sigs, _ := local.Signatures(context.Background(), f.image)
	sigs[0].Payload[0] = 'X'
	again, _ := local.Signatures(context.Background(), f.image)
	if again[0].Payload[0] != '{' {
		t.Error("a later call saw the caller's change")
	}
}

// member is one member of a tar, for building export files by hand.
type member struct {
	name     string
	body     []byte
	typeflag byte // default tar.TypeReg
}

func readMembers(t testing.TB, file []byte) []member {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(file))
	var out []member
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, member{name: hdr.Name, body: b, typeflag: hdr.Typeflag})
	}
}

func writeMembers(t testing.TB, ms []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		tf := m.typeflag
		if tf == 0 {
			tf = tar.TypeReg
		}
		hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), Typeflag: tf}
		if tf != tar.TypeReg {
			hdr.Size = 0
			hdr.Linkname = "/etc/passwd"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if tf == tar.TypeReg {
			if _, err := tw.Write(m.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// smallExport is an export of one image with one signature and one
// bundle, made without a registry.
func smallExport(t *testing.T) (file []byte, image name.Digest) {
	t.Helper()
	image, _ = name.NewDigest("registry.example/app@" + sourcetest.DigestOf([]byte("image")).String())
	src := &fakeSource{sigs: []artifact.Signature{{Payload: sourcetest.SimpleSigning(image), Signature: []byte("sig"), Attached: image.DigestStr()}},
		bundles: []artifact.Bundle{{JSON: sourcetest.FakeBundle(1), MediaType: ocimaterial.BundleMediaTypeV03, ArtifactType: ocimaterial.BundleMediaTypeV03, Attached: image.DigestStr()}}}
	return exportTo(t, src, image), image
}

// fakeSource serves fixed material for any image; err, when set, fails
// every call.
type fakeSource struct {
	sigs    []artifact.Signature
	atts    []artifact.Attestation
	bundles []artifact.Bundle
	holds   bool
	err     error
	descErr error
}

func (f *fakeSource) Signatures(context.Context, name.Digest) ([]artifact.Signature, error) {
	return slices.Clone(f.sigs), f.err
}

func (f *fakeSource) Attestations(context.Context, name.Digest) ([]artifact.Attestation, error) {
	return slices.Clone(f.atts), f.err
}

func (f *fakeSource) Bundles(context.Context, name.Digest) ([]artifact.Bundle, error) {
	return slices.Clone(f.bundles), f.err
}

func (f *fakeSource) Describe(_ context.Context, image name.Digest) (artifact.Manifest, error) {
	if f.descErr != nil {
		return artifact.Manifest{}, f.descErr
	}
	return artifact.Manifest{Digest: image.DigestStr(), MediaType: ocimaterial.MediaTypeOCIManifest}, nil
}

// holdingSource is a fakeSource that is a source.Holder.
type holdingSource struct{ fakeSource }

func (h *holdingSource) Holds(context.Context, name.Digest) (bool, error) { return h.holds, nil }

// TestImportArchiveRefuses: a file that is not exactly what export writes
// is refused with a message that says what is wrong, and nothing is
// written.
func TestImportArchiveRefuses(t *testing.T) {
	good, image := smallExport(t)
	ms := readMembers(t, good)
	h, _ := v1.NewHash(image.DigestStr())
	idxName := indexPath(h)
	find := func(ms []member, name string) int {
		for i, m := range ms {
			if m.name == name {
				return i
			}
		}
		t.Fatalf("no member %s", name)
		return -1
	}
	blobName := func(ms []member) int {
		for i, m := range ms {
			if strings.Contains(m.name, "/blobs/") {
				return i
			}
		}
		t.Fatal("no blob")
		return -1
	}
	edit := func(f func(ms []member) []member) []byte {
		return writeMembers(t, f(slices.Clone(ms)))
	}
	tests := []struct {
		name   string
		file   []byte
		limit  int64
		want   string
		wantIs error
	}{
		{name: "empty file", file: nil, want: "not a sealgate export file: empty"},
		{name: "not a tar", file: []byte("this is not a tar file at all, it is a letter" + strings.Repeat(".", 600)), want: "not a sealgate export file"},
		{name: "first member is not the header", file: edit(func(ms []member) []member { return append(ms[1:], ms[0]) }), want: "first member"},
		{name: "newer version", file: edit(func(ms []member) []member {
			ms[0].body = bytes.Replace(ms[0].body, []byte(".v1+json"), []byte(".v2+json"), 1)
			return ms
		}), want: "export again with the sealgate of the node"},
		{name: "header with an unknown key", file: edit(func(ms []member) []member {
			ms[0].body = []byte(`{"mediaType":"` + ExportMediaType + `","images":[],"signedBy":"me"}`)
			return ms
		}), want: `unknown key "signedBy"`},
		{name: "header with a duplicate key", file: edit(func(ms []member) []member {
			ms[0].body = []byte(`{"mediaType":"` + ExportMediaType + `","images":[],"images":[]}`)
			return ms
		}), want: "duplicate key"},
		{name: "image listed twice", file: edit(func(ms []member) []member {
			ms[0].body = []byte(`{"mediaType":"` + ExportMediaType + `","images":["a/b@` + h.String() + `","c/d@` + h.String() + `"]}`)
			return ms
		}), want: "listed twice"},
		{name: "image not in the header", file: edit(func(ms []member) []member {
			ms[0].body = []byte(`{"mediaType":"` + ExportMediaType + `","images":[]}`)
			return ms
		}), want: "is not listed"},
		{name: "a member outside the layout", file: edit(func(ms []member) []member {
			return append(ms, member{name: "../../etc/cron.d/x", body: []byte("x")})
		}), want: "not a member of an export"},
		{name: "a symbolic link", file: edit(func(ms []member) []member {
			return append(ms, member{name: blobPath(h, sourcetest.DigestOf([]byte("x"))), typeflag: tar.TypeSymlink})
		}), want: "not a regular file"},
		{name: "an upper-case digest", file: edit(func(ms []member) []member {
			ms[find(ms, idxName)].name = strings.ToUpper(h.Hex)
			return ms
		}), want: "not a member"},
		{name: "a member twice", file: edit(func(ms []member) []member { return append(ms, ms[blobName(ms)]) }), want: "twice"},
		{name: "a blob that does not match its name", file: edit(func(ms []member) []member {
			ms[blobName(ms)].body = []byte("tampered")
			return ms
		}), want: "content hashes to"},
		{name: "a blob the index does not name", file: edit(func(ms []member) []member {
			return append(ms, member{name: blobPath(h, sourcetest.DigestOf([]byte("extra"))), body: []byte("extra")})
		}), want: "named by no index"},
		{name: "a blob the index names is missing", file: edit(func(ms []member) []member {
			return slices.Delete(ms, blobName(ms), blobName(ms)+1)
		}), want: "is missing"},
		{name: "no index", file: edit(func(ms []member) []member {
			i := find(ms, idxName)
			return slices.Delete(ms, i, i+1)
		}), want: "no " + idxName},
		{name: "an index for another image", file: edit(func(ms []member) []member {
			i := find(ms, idxName)
			ms[i].body = bytes.Replace(ms[i].body, []byte(h.String()), []byte(sourcetest.DigestOf([]byte("other")).String()), 1)
			return ms
		}), want: "but the file is the entry of"},
		{name: "larger than the limit", file: good, limit: int64(len(good)) / 2, want: "export file larger than", wantIs: source.ErrLimit},
		{name: "truncated", file: good[:len(good)-1500], want: "damaged"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []Option
			if tc.limit > 0 {
				opts = append(opts, WithArchiveBytes(tc.limit))
			}
			local := newTestLocal(t, opts...)
			_, err := local.ImportArchive(bytes.NewReader(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.wantIs)
			}
			if _, err := os.Stat(local.Dir()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused import touched the store: %v", err)
			}
		})
	}
	// The file the cases start from is good.
	if _, err := newTestLocal(t).ImportArchive(bytes.NewReader(good)); err != nil {
		t.Fatalf("the good file: %v", err)
	}
}

// TestParseLocalIndex: the store's index files are read strictly.
func TestParseLocalIndex(t *testing.T) {
	image := sourcetest.DigestOf([]byte("image"))
	blob := sourcetest.DigestOf([]byte("blob")).String()
	lim, _ := ocimaterial.Limits{Signatures: 2, Referrers: 1, PayloadBytes: 100}.WithDefaults()
	sig := `{"mediaType":"` + ocimaterial.SimpleSigningMediaType + `","digest":"` + blob + `","size":4}`
	att := `{"mediaType":"` + ocimaterial.DSSEMediaType + `","digest":"` + blob + `","size":4}`
	bun := `{"mediaType":"` + ocimaterial.BundleMediaTypeV03 + `","artifactType":"` + ocimaterial.BundleMediaTypeV03 + `","digest":"` + blob + `","size":4}`
	man := `{"mediaType":"` + ocimaterial.MediaTypeOCIManifest + `","digest":"` + image.String() + `","size":4}`
	doc := func(fields ...string) string {
		return `{"mediaType":"` + localIndexMediaType + `","image":"` + image.String() + `",` + strings.Join(fields, ",") + `}`
	}
	lists := func(sigs, atts, buns string) string {
		return `"signatures":[` + sigs + `],"attestations":[` + atts + `],"bundles":[` + buns + `]`
	}
	tests := []struct {
		name string
		body string
		want string // "" for valid
	}{
		{"valid", doc(`"manifest":`+man, lists(sig+","+sig, att, bun)), ""},
		{"valid without manifest", doc(lists("", "", "")), ""},
		{"unknown key", doc(lists("", "", ""), `"trusted":true`), `unknown key "trusted"`},
		{"unknown descriptor key", doc(lists(strings.Replace(sig, `"size"`, `"urls":[],"size"`, 1), "", "")), `unknown key "urls"`},
		{"key in another case", doc(`"Signatures":[]`, `"attestations":[],"bundles":[]`), `unknown key "Signatures"`},
		{"duplicate key", doc(lists("", "", ""), `"bundles":[]`), "duplicate key"},
		{"another version", strings.Replace(doc(lists("", "", "")), ".v1+json", ".v2+json", 1), "this sealgate reads"},
		{"another image", strings.Replace(doc(lists("", "", "")), image.String(), blob, 1), "but the file is the entry of"},
		{"list missing", doc(`"signatures":[],"attestations":[]`), "bundles missing"},
		{"list not an array", doc(`"signatures":{},"attestations":[],"bundles":[]`), "not a JSON array"},
		{"too many signatures", doc(lists(sig+","+sig+","+sig, "", "")), "3 signatures, limit 2"},
		{"too many bundles", doc(lists("", "", bun+","+bun)), "2 bundles, limit 1"},
		{"payload over the limit", doc(lists(strings.Replace(sig, `"size":4`, `"size":101`, 1), "", "")), "limit 100"},
		{"negative size", doc(lists(strings.Replace(sig, `"size":4`, `"size":-1`, 1), "", "")), "negative size"},
		{"signature of another media type", doc(lists(att, "", "")), "want \"" + ocimaterial.SimpleSigningMediaType},
		{"attestation of another media type", doc(lists("", sig, "")), "want \"" + ocimaterial.DSSEMediaType},
		{"bundle without artifact type", doc(lists("", "", strings.Replace(bun, `"artifactType":"`+ocimaterial.BundleMediaTypeV03+`",`, "", 1))), "not a Sigstore bundle"},
		{"manifest of another digest", doc(`"manifest":`+strings.Replace(man, image.String(), blob, 1), lists("", "", "")), "is not the image's"},
		{"manifest not a manifest", doc(`"manifest":`+strings.Replace(man, ocimaterial.MediaTypeOCIManifest, "text/plain", 1), lists("", "", "")), "not an image manifest"},
		{"bad digest", doc(lists(strings.Replace(sig, blob, "sha256:XYZ", 1), "", "")), "digest"},
		{"trailing data", doc(lists("", "", "")) + "{}", "after the top-level value"},
		{"not an object", `[]`, "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx, err := parseLocalIndex([]byte(tc.body), image, lim)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid index refused: %v", err)
				}
				again, err := idx.marshal()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := parseLocalIndex(again, image, lim); err != nil {
					t.Fatalf("what marshal writes is refused: %v\n%s", err, again)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// storeWith imports a small export and returns the store and the image.
func storeWith(t *testing.T) (*Store, name.Digest, v1.Hash) {
	t.Helper()
	file, image := smallExport(t)
	local := newTestLocal(t)
	if _, err := local.ImportArchive(bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(image.DigestStr())
	return local, image, h
}

// TestLocalDamagedStore: whatever is done to the store's files, the store
// fails (never returns altered material, never says "none" for an entry
// it has); only a missing store or entry is "none".
func TestLocalDamagedStore(t *testing.T) {
	ctx := context.Background()
	sigBlob := func(t *testing.T, l *Store, image name.Digest) string {
		sigs, err := l.Signatures(ctx, image)
		if err != nil || len(sigs) != 1 {
			t.Fatalf("before the damage: %v", err)
		}
		h, _ := v1.NewHash(image.DigestStr())
		return filepath.Join(l.Dir(), filepath.FromSlash(blobPath(h, sourcetest.DigestOf(sigs[0].Payload))))
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, l *Store, image name.Digest, h v1.Hash)
		want   string
		wantIs error
	}{
		{"payload edited", func(t *testing.T, l *Store, image name.Digest, h v1.Hash) {
			p := sigBlob(t, l, image)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte("critical"), []byte("CRITICAL"), 1), 0o644)
		}, "content hashes to", nil},
		{"payload removed", func(t *testing.T, l *Store, image name.Digest, h v1.Hash) {
			os.Remove(sigBlob(t, l, image))
		}, "no such file", nil},
		{"payload grown", func(t *testing.T, l *Store, image name.Digest, h v1.Hash) {
			p := sigBlob(t, l, image)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, append(b, ' '), 0o644)
		}, "limit", source.ErrLimit},
		{"payload is a link out of the store", func(t *testing.T, l *Store, image name.Digest, h v1.Hash) {
			p := sigBlob(t, l, image)
			os.Remove(p)
			os.Symlink("/etc/passwd", p)
		}, "escapes", nil},
		{"payload is a FIFO", func(t *testing.T, l *Store, image name.Digest, h v1.Hash) {
			p := sigBlob(t, l, image)
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Skip(err)
			}
		}, "not a regular file", nil},
		{"index edited", func(t *testing.T, l *Store, image name.Digest, h v1.Hash) {
			p := filepath.Join(l.Dir(), filepath.FromSlash(indexPath(h)))
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte(`"bundles"`), []byte(`"bundles": [], "x"`), 1), 0o644)
		}, "index.json", nil},
		{"index huge", func(t *testing.T, l *Store, image name.Digest, h v1.Hash) {
			p := filepath.Join(l.Dir(), filepath.FromSlash(indexPath(h)))
			os.WriteFile(p, bytes.Repeat([]byte(" "), int(ocimaterial.DefaultManifestBytes)+1), 0o644)
		}, "limit", source.ErrLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, image, h := storeWith(t)
			tc.damage(t, l, image, h)
			sigs, err := l.Signatures(ctx, image)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Signatures = %d, %v; want an error saying %q", len(sigs), err, tc.want)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want %v", err, tc.wantIs)
			}
			if errors.Is(err, source.ErrUnreachable) || errors.Is(err, source.ErrNotFound) {
				t.Errorf("a damaged store reads as an outage or absence: %v", err)
			}
		})
	}
}

func TestLocalNothing(t *testing.T) {
	ctx := context.Background()
	l, image, _ := storeWith(t)
	other, _ := name.NewDigest("registry.example/app@" + sourcetest.DigestOf([]byte("other")).String())
	empty := newTestLocal(t) // the directory does not exist
	for what, s := range map[string]*Store{"no entry": l, "no store": empty} {
		sigs, err1 := s.Signatures(ctx, other)
		atts, err2 := s.Attestations(ctx, other)
		bundles, err3 := s.Bundles(ctx, other)
		if err := errors.Join(err1, err2, err3); err != nil || sigs == nil || atts == nil || bundles == nil ||
			len(sigs)+len(atts)+len(bundles) != 0 {
			t.Errorf("%s: %v %v %v, %v; want empty non-nil slices", what, sigs, atts, bundles, err)
		}
		if _, err := s.Describe(ctx, other); !errors.Is(err, source.ErrNotFound) {
			t.Errorf("%s: Describe = %v, want source.ErrNotFound", what, err)
		}
		if held, err := s.Holds(ctx, other); held || err != nil {
			t.Errorf("%s: Holds = %v, %v", what, held, err)
		}
	}
	// The small export carries no manifest (its source keeps none).
	if _, err := l.Describe(ctx, image); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Describe without a stored manifest = %v, want source.ErrNotFound", err)
	}
	if held, err := l.Holds(ctx, image); !held || err != nil {
		t.Errorf("Holds = %v, %v; want true", held, err)
	}
	if _, err := New(""); err == nil {
		t.Error("NewLocal(\"\") accepted")
	}
	if _, err := New("x", WithLimits(ocimaterial.Limits{Signatures: -1})); err == nil {
		t.Error("negative limits accepted")
	}
}

// TestLocalMerge: importing again adds nothing twice; importing other
// material adds it; a merge over the limits is refused and changes
// nothing.
func TestLocalMerge(t *testing.T) {
	ctx := context.Background()
	image, _ := name.NewDigest("registry.example/app@" + sourcetest.DigestOf([]byte("image")).String())
	sig := func(n int) artifact.Signature {
		return artifact.Signature{Payload: sourcetest.SimpleSigning(image), Signature: []byte{byte(n)}, Attached: image.DigestStr()}
	}
	first := exportTo(t, &fakeSource{sigs: []artifact.Signature{sig(1), sig(2)}}, image)
	second := exportTo(t, &fakeSource{sigs: []artifact.Signature{sig(2), sig(3)}, atts: []artifact.Attestation{{Envelope: sourcetest.Envelope(1)}}}, image)
	l := newTestLocal(t, WithLimits(ocimaterial.Limits{Signatures: 3}))
	for _, f := range [][]byte{first, first, second, second} {
		if _, err := l.ImportArchive(bytes.NewReader(f)); err != nil {
			t.Fatal(err)
		}
	}
	sigs, err := l.Signatures(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, s := range sigs {
		got = append(got, s.Signature...)
	}
	if !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Errorf("signatures after the imports: %v, want 1 2 3", got)
	}
	if atts, _ := l.Attestations(ctx, image); len(atts) != 1 {
		t.Errorf("%d attestations, want 1", len(atts))
	}
	over := exportTo(t, &fakeSource{sigs: []artifact.Signature{sig(4)}}, image)
	if _, err := l.ImportArchive(bytes.NewReader(over)); !errors.Is(err, source.ErrLimit) || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("a merge over the limit: %v", err)
	}
	if after, _ := l.Signatures(ctx, image); len(after) != 3 {
		t.Errorf("a refused import changed the store: %d signatures", len(after))
	}
	// No temporary files are left behind.
	filepath.WalkDir(l.Dir(), func(p string, d fs.DirEntry, err error) error {
		if strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
}

// TestExportFails: an export that cannot fetch everything fails rather
// than writing a file that silently lacks material.
func TestExportFails(t *testing.T) {
	image, _ := name.NewDigest("registry.example/app@" + sourcetest.DigestOf([]byte("image")).String())
	tests := []struct {
		name string
		src  source.Source
		want error
	}{
		{"registry unreachable", &fakeSource{err: source.ErrUnreachable}, source.ErrUnreachable},
		{"more signatures than a node reads", &fakeSource{sigs: manySignatures(ocimaterial.DefaultSignatures + 1)}, source.ErrLimit},
		{"a bundle of another type", &fakeSource{bundles: []artifact.Bundle{{JSON: []byte("{}"), MediaType: "application/json"}}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := Export(context.Background(), tc.src, []name.Digest{image}, &buf)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Error("a failed export wrote output")
			}
		})
	}
	if _, err := Export(context.Background(), &fakeSource{}, nil, io.Discard); err == nil {
		t.Error("an export of no images succeeded")
	}
}

func manySignatures(n int) []artifact.Signature {
	out := make([]artifact.Signature, n)
	for i := range out {
		out[i].Payload = fmt.Appendf(nil, "%d", i)
	}
	return out
}

var errAuth = errors.New("401 unauthorized")

// TestMulti decides, for each combination of what the sources answer,
// what a combined source answers.
func TestMulti(t *testing.T) {
	ctx := context.Background()
	image, _ := name.NewDigest("registry.example/app@" + sourcetest.DigestOf([]byte("image")).String())
	a := artifact.Signature{Payload: []byte("a"), Attached: image.DigestStr(), Origin: "local"}
	aAgain := a
	aAgain.Origin = "registry"
	b := artifact.Signature{Payload: []byte("b"), Attached: image.DigestStr()}
	down := fmt.Errorf("dial: %w", source.ErrUnreachable)
	tests := []struct {
		name    string
		sources []source.Source
		want    []artifact.Signature
		wantErr error // nil: no error; errAuth: an error that is not source.ErrUnreachable
	}{
		{"both answer: the union, without duplicates", []source.Source{&fakeSource{sigs: []artifact.Signature{a}}, &fakeSource{sigs: []artifact.Signature{aAgain, b}}}, []artifact.Signature{a, b}, nil},
		{"both answer none", []source.Source{&fakeSource{}, &fakeSource{}}, []artifact.Signature{}, nil},
		{"registry down, local material counts", []source.Source{&fakeSource{sigs: []artifact.Signature{a}}, &fakeSource{err: down}}, []artifact.Signature{a}, nil},
		{"registry down, local holds other kinds", []source.Source{&holdingSource{fakeSource{holds: true}}, &fakeSource{err: down}}, []artifact.Signature{}, nil},
		{"registry down, local knows nothing", []source.Source{&holdingSource{fakeSource{}}, &fakeSource{err: down}}, nil, source.ErrUnreachable},
		{"registry down, a source that cannot tell", []source.Source{&fakeSource{}, &fakeSource{err: down}}, nil, source.ErrUnreachable},
		{"every source down", []source.Source{&fakeSource{err: down}, &fakeSource{err: down}}, nil, source.ErrUnreachable},
		{"a failure is never papered over", []source.Source{&fakeSource{sigs: []artifact.Signature{a}}, &fakeSource{err: errAuth}}, nil, errAuth},
		{"a failure beats an outage", []source.Source{&fakeSource{err: down}, &fakeSource{err: errAuth}}, nil, errAuth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := source.NewMulti(tc.sources...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Signatures(ctx, image)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("err = %v, want none", err)
			case tc.wantErr == source.ErrUnreachable && !errors.Is(err, source.ErrUnreachable):
				t.Fatalf("err = %v, want source.ErrUnreachable", err)
			case tc.wantErr == errAuth && (err == nil || errors.Is(err, source.ErrUnreachable)):
				t.Fatalf("err = %v, want a failure that is not source.ErrUnreachable", err)
			}
			if tc.wantErr != nil {
				return
			}
			if got == nil || len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if !equalSig(got[i], tc.want[i]) || got[i].Origin != tc.want[i].Origin {
					t.Errorf("signature %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
	if _, err := source.NewMulti(); err == nil {
		t.Error("source.NewMulti() accepted")
	}
	if _, err := source.NewMulti(&fakeSource{}, nil); err == nil {
		t.Error("a nil source accepted")
	}
}

func TestMultiDescribe(t *testing.T) {
	ctx := context.Background()
	image, _ := name.NewDigest("registry.example/app@" + sourcetest.DigestOf([]byte("image")).String())
	notFound := fmt.Errorf("gone: %w", source.ErrNotFound)
	down := fmt.Errorf("dial: %w", source.ErrUnreachable)
	tests := []struct {
		name          string
		errs          []error
		ok            bool
		isNotFound    bool
		isUnreachable bool
	}{
		{"the first answers", []error{nil, errAuth}, true, false, false},
		{"the second answers", []error{notFound, nil}, true, false, false},
		{"after an outage", []error{down, nil}, true, false, false},
		{"not found anywhere", []error{notFound, notFound}, false, true, false},
		{"not found here, unreachable there", []error{notFound, down}, false, false, true},
		{"a failure", []error{notFound, errAuth}, false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srcs []source.Source
			for _, e := range tc.errs {
				srcs = append(srcs, &fakeSource{descErr: e})
			}
			m, _ := source.NewMulti(srcs...)
			d, err := m.Describe(ctx, image)
			if tc.ok {
				if err != nil || d.Digest != image.DigestStr() {
					t.Fatalf("Describe = %+v, %v", d, err)
				}
				return
			}
			if err == nil || errors.Is(err, source.ErrNotFound) != tc.isNotFound || errors.Is(err, source.ErrUnreachable) != tc.isUnreachable {
				t.Fatalf("err = %v; want not found %v, unreachable %v", err, tc.isNotFound, tc.isUnreachable)
			}
		})
	}
}

// TestMultiLocalAndDeadRegistry: the real pair an air-gapped node runs —
// the store first, a registry that refuses connections second.
func TestMultiLocalAndDeadRegistry(t *testing.T) {
	ctx := context.Background()
	f := newRegistryFixture(t)
	local := newTestLocal(t)
	if _, err := local.ImportArchive(bytes.NewReader(exportTo(t, newRegistrySource(t), f.image, f.index))); err != nil {
		t.Fatal(err)
	}
	f.reg.Srv.Close()
	m, err := source.NewMulti(local, newRegistrySource(t, source.WithTimeout(2e9)))
	if err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, m, f.image)
	if len(got.sigs) != 2 || len(got.atts) != 2 || len(got.bundles) != 2 || got.descErr != nil {
		t.Fatalf("imported image with the registry down: %d/%d/%d, %v", len(got.sigs), len(got.atts), len(got.bundles), got.descErr)
	}
	// The index has an entry of its own (its manifest, no signatures): the
	// store answers for it, "none", as the registry did at export time.
	if sigs, err := m.Signatures(ctx, f.index); err != nil || len(sigs) != 0 {
		t.Errorf("index signatures with the registry down: %v, %v; want none", sigs, err)
	}
	if sigs, err := m.Signatures(ctx, f.child); err != nil || len(sigs) != 1 {
		t.Errorf("signed platform manifest with the registry down: %d, %v", len(sigs), err)
	}
	if d, err := m.Describe(ctx, f.index); err != nil || !d.IsIndex() || len(d.Children) != 2 {
		t.Errorf("Describe of the index from the store: %+v, %v", d, err)
	}
	if _, err := m.Bundles(ctx, f.unsigned); !errors.Is(err, source.ErrUnreachable) {
		t.Errorf("an image never imported: %v, want source.ErrUnreachable", err)
	}
}

// TestLocalCosign: what the real cosign writes — a classic signature, a
// Sigstore bundle and a classic attestation — comes back from the store
// byte for byte after an export and import, and the classic material also
// after `cosign save --dir` and an import of that layout (cosign v2 saves
// no referrers).
func TestLocalCosign(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: true})
	cs := testenv.NewCosign(t)
	key, _, err := cs.GenerateKeyPair("release")
	if err != nil {
		t.Fatal(err)
	}
	img, err := testenv.RandomImage(7)
	if err != nil {
		t.Fatal(err)
	}
	image, err := reg.Push(img, "team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Sign(key, image.String()); err != nil {
		t.Fatal(err)
	}
	if err := cs.Sign(key, image.String(), "--new-bundle-format"); err != nil {
		t.Fatal(err)
	}
	pred := filepath.Join(cs.Dir, "predicate.json")
	if err := os.WriteFile(pred, []byte(`{"buildDefinition":{"buildType":"https://example.com/b/v1","externalParameters":{}},"runDetails":{"builder":{"id":"https://example.com/builder"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Run("attest", "--key", key, "--type", "slsaprovenance1", "--predicate", pred, "--tlog-upload=false", "--yes", image.String()); err != nil {
		t.Fatal(err)
	}

	src := newRegistrySource(t)
	want := fetchAll(t, src, image)
	if len(want.sigs) != 1 || len(want.atts) != 1 || len(want.bundles) != 1 || want.descErr != nil {
		t.Fatalf("cosign wrote %d/%d/%d signatures/attestations/bundles (%v), want 1/1/1", len(want.sigs), len(want.atts), len(want.bundles), want.descErr)
	}

	local := newTestLocal(t)
	if _, err := local.ImportArchive(bytes.NewReader(exportTo(t, src, image))); err != nil {
		t.Fatal(err)
	}
	sameMaterial(t, "export", fetchAll(t, local, image), want)

	layout := filepath.Join(t.TempDir(), "saved")
	if _, err := cs.Run("save", "--dir", layout, image.String()); err != nil {
		t.Fatal(err)
	}
	saved := newTestLocal(t)
	sums, err := saved.Import(layout)
	if err != nil {
		t.Fatalf("import of cosign save: %v", err)
	}
	if len(sums) != 1 || sums[0].Digest != image.DigestStr() || sums[0].Signatures != 1 || sums[0].Attestations != 1 || !sums[0].Manifest {
		t.Errorf("cosign save import: %+v", sums)
	}
	classic := want
	classic.bundles = nil
	sameMaterial(t, "cosign save", fetchAll(t, saved, image), classic)
}

// TestImportLayoutRefuses: a layout that is not what cosign save writes,
// or whose content does not match its digests, is refused.
func TestImportLayoutRefuses(t *testing.T) {
	image := []byte(`{"schemaVersion":2,"mediaType":"` + ocimaterial.MediaTypeOCIManifest + `","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"` + sourcetest.DigestOf([]byte("{}")).String() + `"},"layers":[]}`)
	ih := sourcetest.DigestOf(image)
	write := func(t *testing.T, files map[string][]byte) string {
		dir := t.TempDir()
		for n, b := range files {
			p := filepath.Join(dir, filepath.FromSlash(n))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	index := func(descs ...string) []byte {
		return []byte(`{"schemaVersion":2,"mediaType":"` + ocimaterial.MediaTypeOCIIndex + `","manifests":[` + strings.Join(descs, ",") + `]}`)
	}
	desc := func(h v1.Hash, size int, kind string) string {
		return fmt.Sprintf(`{"mediaType":%q,"size":%d,"digest":%q,"annotations":{"kind":%q}}`, ocimaterial.MediaTypeOCIManifest, size, h, kind)
	}
	base := func() map[string][]byte {
		return map[string][]byte{
			"oci-layout":             []byte(`{"imageLayoutVersion":"1.0.0"}`),
			"index.json":             index(desc(ih, len(image), layoutKindImage)),
			"blobs/sha256/" + ih.Hex: image,
		}
	}
	tests := []struct {
		name string
		edit func(map[string][]byte)
		want string
	}{
		{"not a layout", func(f map[string][]byte) { delete(f, "oci-layout") }, "not an OCI image layout"},
		{"another layout version", func(f map[string][]byte) { f["oci-layout"] = []byte(`{"imageLayoutVersion":"2.0.0"}`) }, "want 1.0.0"},
		{"no image", func(f map[string][]byte) { f["index.json"] = index() }, "is this what `cosign save --dir` wrote?"},
		{"two images", func(f map[string][]byte) {
			f["index.json"] = index(desc(ih, len(image), layoutKindImage), desc(ih, len(image), layoutKindImageIndex))
		}, "two manifests of kind"},
		{"image manifest altered", func(f map[string][]byte) {
			f["blobs/sha256/"+ih.Hex] = bytes.Replace(image, []byte("[]"), []byte("[ ]"), 1)
		}, "descriptor says"},
		{"image manifest missing", func(f map[string][]byte) { delete(f, "blobs/sha256/"+ih.Hex) }, "no such file"},
		{"signature manifest missing", func(f map[string][]byte) {
			f["index.json"] = index(desc(ih, len(image), layoutKindImage), desc(sourcetest.DigestOf([]byte("x")), 1, layoutKindSignatures))
		}, "signature manifest"},
		{"index.json with a duplicate key", func(f map[string][]byte) {
			f["index.json"] = []byte(`{"schemaVersion":2,"schemaVersion":2,"manifests":[]}`)
		}, "duplicate key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := base()
			tc.edit(files)
			l := newTestLocal(t)
			_, err := l.Import(write(t, files))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	// The base is a valid (unsigned) layout.
	l := newTestLocal(t)
	sums, err := l.Import(write(t, base()))
	if err != nil || len(sums) != 1 || sums[0].Digest != ih.String() || !sums[0].Manifest {
		t.Fatalf("the base layout: %+v, %v", sums, err)
	}
	// A layout larger than the import limit.
	small := newTestLocal(t, WithArchiveBytes(int64(len(image))-1))
	if _, err := small.Import(write(t, base())); !errors.Is(err, source.ErrLimit) {
		t.Errorf("over the import limit: %v, want source.ErrLimit", err)
	}
}
