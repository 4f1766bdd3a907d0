//go:build integration

package integration

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestRegressionIndexChildContainerdRuns: an index lists an unsigned child
// under another spelling of this node's platform first ("x86_64" for
// amd64, "aarch64" for arm64) and a signed child under the usual one.
// containerd normalises both and runs the first; under
// acceptPlatformSignature: true, the signature over the other child must
// not let the index in. Real containerd decides which child runs.
func TestRegressionIndexChildContainerdRuns(t *testing.T) {
	alias := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if alias == "" {
		t.Skipf("no alternative spelling for %s", runtime.GOARCH)
	}
	f := newFixture(t)
	cosign := testenv.NewCosign(t)
	unsignedImg := busyboxImage(t, "index-unsigned")
	signedImg := busyboxImage(t, "index-signed")
	adds := []mutate.IndexAddendum{}
	for _, c := range []struct {
		img  v1.Image
		arch string
	}{{unsignedImg, alias}, {signedImg, runtime.GOARCH}} {
		mt, err := c.img.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: c.img, Descriptor: v1.Descriptor{MediaType: mt, Platform: &v1.Platform{OS: "linux", Architecture: c.arch}}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	d, err := f.reg.PushIndex(idx, "multi/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	signedDigest, _ := signedImg.Digest()
	unsignedDigest, _ := unsignedImg.Digest()
	priv, pub, err := cosign.GenerateKeyPair("platform")
	if err != nil {
		t.Fatal(err)
	}
	if err := cosign.Sign(priv, d.Context().Digest(signedDigest.String()).String()); err != nil {
		t.Fatal(err)
	}
	copyFile(t, pub, f.trustDir+"/keys/platform.pub")
	writeFile(t, f.policy, strings.Replace(f.policyYAML(), "rules:\n", fmt.Sprintf(`rules:
  - name: multi
    images: ["%s"]
    signatures:
      acceptPlatformSignature: true
      authorities:
        - key: keys/platform.pub
`, f.reg.Ref("multi/**")), 1))

	c := f.node(t)
	startSealgate(t, f, c)
	id, out, err := c.Run(f.reg.Ref("multi/app:v1"), "multi", "default")
	if err == nil {
		ref := imageRef(t, c, id)
		t.Fatalf("index with an unsigned child containerd runs was allowed (runs %s; unsigned child %s, signed %s)\n%s", ref, unsignedDigest, signedDigest, out)
	}
	if !strings.Contains(out, unsignedDigest.String()) {
		t.Errorf("refusal does not name the child containerd runs (%s):\n%s", unsignedDigest, out)
	}
}

func busyboxImage(t *testing.T, variant string) v1.Image {
	t.Helper()
	img, err := testenv.BusyboxImage("sleep", "3600")
	if err != nil {
		testenv.RequireTool(t, "busybox")
		t.Fatal(err)
	}
	return withLabel(t, img, "dev.sealgate.test.variant", variant)
}
