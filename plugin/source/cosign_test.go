package source

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"

	"github.com/sealgate/sealgate/internal/testenv"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
	"github.com/sealgate/sealgate/plugin/source/sourcetest"
)

// cosignPath finds the real cosign CLI, or skips (fails with
// SEALGATE_REQUIRE_TOOLS=1).
func cosignPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("cosign")
	if err != nil {
		p = "/tmp/tools/bin/cosign"
		if _, serr := os.Stat(p); serr != nil {
			if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
				t.Fatalf("cosign not found on PATH or in /tmp/tools/bin and SEALGATE_REQUIRE_TOOLS=1")
			}
			t.Skip("cosign not found on PATH or in /tmp/tools/bin; set SEALGATE_REQUIRE_TOOLS=1 to make this a failure")
		}
	}
	return p
}

// TestCosignSigned reads what the real cosign CLI writes: sign an image on
// a 127.0.0.1 registry with a key, offline, and check that the signature
// comes back and verifies with cosign's public key.
func TestCosignSigned(t *testing.T) {
	cosign := cosignPath(t)
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "signed/app")

	dir := t.TempDir()
	env := append(os.Environ(), "COSIGN_PASSWORD=", "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"))
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cosign %v: %v\n%s", args, err, out)
		}
	}
	run("generate-key-pair")
	run("sign", "--key", "cosign.key", "--tlog-upload=false", "--yes", "--allow-http-registry", image.String())

	got, err := newTestSource(t).Signatures(context.Background(), image)
	if err != nil {
		t.Fatalf("Signatures: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d signatures, want 1", len(got))
	}
	sig := got[0]

	var payload struct {
		Critical struct {
			Image struct {
				Digest string `json:"docker-manifest-digest"`
			} `json:"image"`
		} `json:"critical"`
	}
	if err := json.Unmarshal(sig.Payload, &payload); err != nil {
		t.Fatalf("payload: %v\n%s", err, sig.Payload)
	}
	if payload.Critical.Image.Digest != image.DigestStr() {
		t.Errorf("payload signs %s, want %s", payload.Critical.Image.Digest, image.DigestStr())
	}

	pubPEM, err := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pubPEM)
	if block == nil {
		t.Fatal("cosign.pub is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(sig.Payload)
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], sig.Signature) {
		t.Error("cosign's signature does not verify over the payload with cosign.pub")
	}
	if sig.Attached != image.DigestStr() || len(sig.Certificate) != 0 || len(sig.RekorBundle) != 0 {
		t.Errorf("unexpected fields: attached %q, certificate %d bytes, bundle %d bytes",
			sig.Attached, len(sig.Certificate), len(sig.RekorBundle))
	}

	// A signature with another key is appended to the same tag (cosign
	// skips re-signing with a key that already signed).
	run("generate-key-pair", "--output-key-prefix", "other")
	run("sign", "--key", "other.key", "--tlog-upload=false", "--yes", "--allow-http-registry", image.String())
	got, err = newTestSource(t).Signatures(context.Background(), image)
	if err != nil || len(got) != 2 {
		t.Fatalf("after a second signing: %d signatures, %v", len(got), err)
	}
	if bytes.Equal(got[0].Signature, got[1].Signature) {
		t.Error("two signings gave the same signature bytes")
	}
}

// requestLog is a transport that notes the path of every request and the
// status of its reply.
type requestLog struct {
	mu   sync.Mutex
	seen []string // "GET /v2/... 200"
}

func (r *requestLog) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	r.mu.Lock()
	r.seen = append(r.seen, req.Method+" "+req.URL.Path+" "+status)
	r.mu.Unlock()
	return resp, err
}

func (r *requestLog) saw(substr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen {
		if strings.Contains(s, substr) {
			return true
		}
	}
	return false
}

// writePredicate writes a SLSA v1 provenance predicate for cosign attest.
func writePredicate(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "provenance.json")
	body := `{"buildDefinition":{"buildType":"https://example.com/build/v1","externalParameters":{"ref":"refs/tags/v1"}},` +
		`"runDetails":{"builder":{"id":"https://example.com/builder"}}}`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCosignBundles reads what the real cosign CLI attaches with
// --new-bundle-format (`cosign sign` and `cosign attest`), offline with a
// key, on a registry with the referrers API and on one without it. cosign
// v2.6.5 writes a DSSE bundle in both cases (`sign` one of predicate type
// https://sigstore.dev/cosign/sign/v1); without the referrers API its
// go-containerregistry writes the fallback index at "sha256-<hex>", listing
// the referrer under the empty config type, not the bundle type.
func TestCosignBundles(t *testing.T) {
	cosignPath(t) // skip or fail as the other cosign tests
	for _, referrers := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrers=%v", referrers), func(t *testing.T) {
			reg := testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: referrers})
			img, err := testenv.RandomImage(3)
			if err != nil {
				t.Fatal(err)
			}
			image, err := reg.Push(img, "team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			c := testenv.NewCosign(t)
			key, pub, err := c.GenerateKeyPair("release")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Sign(key, image.String(), "--new-bundle-format"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Run("attest", "--key", key, "--type", "slsaprovenance1", "--predicate", writePredicate(t, c.Dir),
				"--tlog-upload=false", "--yes", "--new-bundle-format", image.String()); err != nil {
				t.Fatal(err)
			}
			fallbackTag, _ := ReferrersTag(image)
			if _, err := crane.Manifest(fallbackTag.String(), crane.Insecure); (err == nil) == referrers {
				t.Fatalf("fallback tag present: %v, with the referrers API %v", err == nil, referrers)
			}

			rec := &requestLog{}
			src := newTestSource(t, WithTransport(rec))
			got, err := src.Bundles(context.Background(), image)
			if err != nil {
				t.Fatalf("Bundles: %v", err)
			}
			if len(got) != 2 {
				t.Fatalf("got %d bundles, want 2", len(got))
			}
			if api := rec.saw("/referrers/" + image.DigestStr() + " 200"); api != referrers {
				t.Errorf("referrers API answered: %v, want %v", api, referrers)
			}
			if fb := rec.saw("/manifests/" + fallbackTag.TagStr() + " 200"); fb == referrers {
				t.Errorf("fallback tag read: %v, want %v", fb, !referrers)
			}
			pubPEM, err := os.ReadFile(pub)
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, b := range got {
				if b.MediaType != ocimaterial.BundleMediaTypeV03Alt || b.ArtifactType != ocimaterial.BundleMediaTypeV03Alt || b.Attached != image.DigestStr() {
					t.Errorf("bundle %s: media type %q, artifact type %q, attached %q", b.Origin, b.MediaType, b.ArtifactType, b.Attached)
				}
				var sb sgbundle.Bundle
				if err := sb.UnmarshalJSON(b.JSON); err != nil {
					t.Fatalf("sigstore-go cannot read bundle %s: %v", b.Origin, err)
				}
				var doc struct {
					DSSEEnvelope dsseEnvelope `json:"dsseEnvelope"`
				}
				if err := json.Unmarshal(b.JSON, &doc); err != nil {
					t.Fatal(err)
				}
				if !verifyDSSE(t, pubPEM, doc.DSSEEnvelope) {
					t.Errorf("bundle %s: envelope does not verify with the cosign key", b.Origin)
				}
				stmt := decodeStatement(t, doc.DSSEEnvelope.Payload)
				if stmt.digest() != strings.TrimPrefix(image.DigestStr(), "sha256:") {
					t.Errorf("bundle %s: statement subject %q", b.Origin, stmt.digest())
				}
				types = append(types, stmt.PredicateType)
			}
			slices.Sort(types)
			if want := []string{"https://sigstore.dev/cosign/sign/v1", "https://slsa.dev/provenance/v1"}; !slices.Equal(types, want) {
				t.Errorf("predicate types %v, want %v", types, want)
			}

			// The registry goes away: unreachable, not "no bundles".
			if err := reg.Stop(); err != nil {
				t.Fatal(err)
			}
			if _, err := newTestSource(t).Bundles(context.Background(), image); !errors.Is(err, ErrUnreachable) {
				t.Fatalf("registry stopped: %v, want ErrUnreachable", err)
			}
		})
	}
}

// TestCosignAttestations reads cosign's classic attestations (the
// "sha256-<hex>.att" tag, `cosign attest` without --new-bundle-format).
func TestCosignAttestations(t *testing.T) {
	cosignPath(t)
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: true})
	img, err := testenv.RandomImage(4)
	if err != nil {
		t.Fatal(err)
	}
	image, err := reg.Push(img, "team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.NewCosign(t)
	key, pub, err := c.GenerateKeyPair("release")
	if err != nil {
		t.Fatal(err)
	}
	src := newTestSource(t)
	if got, err := src.Attestations(context.Background(), image); err != nil || len(got) != 0 {
		t.Fatalf("before attesting: %+v, %v", got, err)
	}
	if _, err := c.Run("attest", "--key", key, "--type", "slsaprovenance1", "--predicate", writePredicate(t, c.Dir),
		"--tlog-upload=false", "--yes", image.String()); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(c.Dir, "other.json")
	if err := os.WriteFile(other, []byte(`{"ok":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run("attest", "--key", key, "--type", "https://example.com/other/v1", "--predicate", other,
		"--tlog-upload=false", "--yes", image.String()); err != nil {
		t.Fatal(err)
	}
	got, err := src.Attestations(context.Background(), image)
	if err != nil {
		t.Fatalf("Attestations: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d attestations, want 2", len(got))
	}
	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, a := range got {
		var e dsseEnvelope
		if err := json.Unmarshal(a.Envelope, &e); err != nil {
			t.Fatalf("%s: %v", a.Origin, err)
		}
		if e.PayloadType != "application/vnd.in-toto+json" || !verifyDSSE(t, pubPEM, e) {
			t.Errorf("%s: payload type %q or signature does not verify", a.Origin, e.PayloadType)
		}
		stmt := decodeStatement(t, e.Payload)
		if stmt.digest() != strings.TrimPrefix(image.DigestStr(), "sha256:") {
			t.Errorf("%s: statement subject %q", a.Origin, stmt.digest())
		}
		if a.Attached != image.DigestStr() || len(a.Certificate) != 0 || len(a.RekorBundle) != 0 {
			t.Errorf("%s: attached %q, certificate %d bytes, bundle %d bytes", a.Origin, a.Attached, len(a.Certificate), len(a.RekorBundle))
		}
		types = append(types, stmt.PredicateType)
	}
	slices.Sort(types)
	if want := []string{"https://example.com/other/v1", "https://slsa.dev/provenance/v1"}; !slices.Equal(types, want) {
		t.Errorf("predicate types %v, want %v", types, want)
	}
	// Classic attestations are not bundles.
	if b, err := src.Bundles(context.Background(), image); err != nil || len(b) != 0 {
		t.Fatalf("Bundles of an image with only classic attestations: %+v, %v", b, err)
	}
	if err := reg.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Attestations(context.Background(), image); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("registry stopped: %v, want ErrUnreachable", err)
	}
}
