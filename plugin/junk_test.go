package plugin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/nri/pkg/api"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestRegressionJunkBesideValidSignatures: junk pushed beside a valid
// signature must not make a correctly signed image fail. 40 junk layers
// before the valid one in cosign's .sig manifest, and a malformed bundle
// referrer beside a valid bundle: both images are allowed, through NRI,
// within the plugin's deadline (the work is bounded).
func TestRegressionJunkBesideValidSignatures(t *testing.T) {
	cosignBin := testenv.RequireTool(t, "cosign")
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: true})
	dir := t.TempDir()
	cs := &testenv.Cosign{Bin: cosignBin, Dir: dir}
	key, pub, err := cs.GenerateKeyPair("release")
	if err != nil {
		t.Fatal(err)
	}
	push := func(seed int64, repoTag string) name.Digest {
		img, err := testenv.RandomImage(seed)
		if err != nil {
			t.Fatal(err)
		}
		d, err := reg.Push(img, repoTag)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	classic := push(501, "app/junk-classic:v1")
	if err := cs.Sign(key, classic.String()); err != nil {
		t.Fatal(err)
	}
	prependJunkLayers(t, sigTag(classic), 40)

	bundled := push(502, "app/junk-bundle:v1")
	if err := cs.Sign(key, bundled.String(), "--new-bundle-format"); err != nil {
		t.Fatal(err)
	}
	pushJunkReferrer(t, bundled)

	pol := filepath.Join(t.TempDir(), "policy.yaml")
	text := fmt.Sprintf("mode: enforce\ndefault: deny\nrules:\n  - name: app\n    images: [\"%s/app/**\"]\n    signatures:\n      authorities: [{key: %s}]\n", reg.Addr, pub)
	if err := os.WriteFile(pol, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, pol)
	for _, d := range []name.Digest{classic, bundled} {
		_, err := n.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: testPod,
			Container: &api.Container{Id: "c", PodSandboxId: testPod.Id, Name: "c",
				Image: &api.Image{Name: d.Context().String() + ":v1", Digest: d.DigestStr()}}})
		if err != nil {
			t.Errorf("%s with junk beside its valid signature: %v", d.Context(), err)
		}
	}
}

// prependJunkLayers rewrites the .sig manifest at ref with n junk layers
// (payloads that are not simple signing, signatures that do not verify, a
// layer whose blob is missing) before the ones cosign wrote.
func prependJunkLayers(t *testing.T, ref string, n int) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	var junk []v1.Descriptor
	for i := range n {
		payload := []byte(fmt.Sprintf(`{"junk":%d}`, i))
		l := static.NewLayer(payload, types.MediaType("application/vnd.dev.cosign.simplesigning.v1+json"))
		if i%10 != 9 { // every tenth blob is never pushed
			if err := remote.WriteLayer(r.Context(), l); err != nil {
				t.Fatal(err)
			}
		}
		dg, _ := l.Digest()
		junk = append(junk, v1.Descriptor{MediaType: "application/vnd.dev.cosign.simplesigning.v1+json", Size: int64(len(payload)), Digest: dg,
			Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("junk-%d", i)))}})
	}
	m.Layers = append(junk, m.Layers...)
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawManifest{raw: raw, mt: desc.MediaType}); err != nil {
		t.Fatal(err)
	}
}

// pushJunkReferrer attaches to d two referrers that claim to be Sigstore
// bundles: one holds garbage, the other names a blob that is not there.
func pushJunkReferrer(t *testing.T, d name.Digest) {
	t.Helper()
	pushBundleReferrer(t, d, []byte(`{"this is": "not a bundle"`), true)
	pushBundleReferrer(t, d, []byte(`{"never": "pushed"}`), false)
}

func pushBundleReferrer(t *testing.T, d name.Digest, blob []byte, pushBlob bool) {
	t.Helper()
	const bundleType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	l := static.NewLayer(blob, bundleType)
	if pushBlob {
		if err := remote.WriteLayer(d.Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	empty := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	if err := remote.WriteLayer(d.Context(), empty); err != nil {
		t.Fatal(err)
	}
	ld, _ := l.Digest()
	ed, _ := empty.Digest()
	sd, err := v1.NewHash(d.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config:  v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Size: 2, Digest: ed},
		Layers:  []v1.Descriptor{{MediaType: bundleType, Size: int64(len(blob)), Digest: ld}},
		Subject: &v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sd, Size: 1},
	}
	m.ArtifactType = bundleType
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(d.Context().Digest(h.String()), rawManifest{raw: raw, mt: types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
}
