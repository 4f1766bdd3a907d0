package testenv

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestCosignSignCreatesSigTag(t *testing.T) {
	c := NewCosign(t)
	priv, pub, err := c.GenerateKeyPair("release")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{priv, pub} {
		if !strings.HasPrefix(p, c.Dir) {
			t.Errorf("key %s not in %s", p, c.Dir)
		}
	}
	if b, err := os.ReadFile(pub); err != nil || !strings.Contains(string(b), "PUBLIC KEY") {
		t.Fatalf("public key: %v %q", err, b)
	}

	r := NewRegistry(t, RegistryOptions{})
	img, err := RandomImage(42)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Push(img, "signed:v1")
	if err != nil {
		t.Fatal(err)
	}
	sigTag := r.Ref("signed:" + strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	sigRef, _ := name.ParseReference(sigTag)
	if _, err := remote.Get(sigRef); err == nil {
		t.Fatalf("%s exists before signing", sigTag)
	}

	if err := c.Sign(priv, d.String()); err != nil {
		t.Fatal(err)
	}

	sig, err := remote.Image(sigRef)
	if err != nil {
		t.Fatalf("signature tag %s: %v", sigTag, err)
	}
	m, err := sig.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("signature manifest has %d layers, want 1", len(m.Layers))
	}
	if s := m.Layers[0].Annotations["dev.cosignproject.cosign/signature"]; s == "" {
		t.Error("no signature annotation")
	} else if _, err := base64.StdEncoding.DecodeString(s); err != nil {
		t.Errorf("signature annotation: %v", err)
	}
	layers, _ := sig.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	payload, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var ss struct {
		Critical struct {
			Image struct {
				Digest string `json:"docker-manifest-digest"`
			} `json:"image"`
		} `json:"critical"`
	}
	if err := json.Unmarshal(payload, &ss); err != nil {
		t.Fatalf("payload %q: %v", payload, err)
	}
	if ss.Critical.Image.Digest != d.DigestStr() {
		t.Errorf("payload signs %s, want %s", ss.Critical.Image.Digest, d.DigestStr())
	}
}

func TestCosignRunFailureCarriesOutput(t *testing.T) {
	c := NewCosign(t)
	_, err := c.Run("sign", "--key", c.Dir+"/missing.key", "--tlog-upload=false", "--yes", "127.0.0.1:1/x@sha256:"+strings.Repeat("0", 64))
	if err == nil {
		t.Fatal("signing with a missing key succeeded")
	}
	if !strings.Contains(err.Error(), "missing.key") {
		t.Errorf("error does not carry cosign's output: %v", err)
	}
	if _, _, err := c.GenerateKeyPair("../escape"); err == nil {
		t.Error("GenerateKeyPair accepted a path")
	}
}

// TestCosignSignBundleReferrer shows that cosign's bundle format also signs
// offline and is attached as an OCI 1.1 referrer when the registry serves the
// referrers API.
func TestCosignSignBundleReferrer(t *testing.T) {
	c := NewCosign(t)
	priv, _, err := c.GenerateKeyPair("bundle")
	if err != nil {
		t.Fatal(err)
	}
	r := NewRegistry(t, RegistryOptions{Referrers: true})
	img, err := RandomImage(43)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Push(img, "bundled:v1")
	if err != nil {
		t.Fatal(err)
	}
	// Run, not Sign, to see the output: a try to reach the network (TUF,
	// Rekor, Fulcio) would show as a warning about the dead proxy.
	out, err := c.Run("sign", "--key", priv, "--tlog-upload=false", "--yes", "--new-bundle-format", d.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"proxyconnect", "TUF", "WARNING"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("cosign sign output mentions %q; it tried to go online:\n%s", bad, out)
		}
	}
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, m := range im.Manifests {
		types = append(types, m.ArtifactType)
	}
	if !slices.ContainsFunc(types, func(s string) bool { return strings.HasPrefix(s, "application/vnd.dev.sigstore.bundle") }) {
		t.Fatalf("referrers of %s have artifact types %q, want a sigstore bundle", d, types)
	}
}
