// Package sourcetest serves go-containerregistry's registry on 127.0.0.1
// and writes cosign's signature material into it, for the tests of the
// packages that read that material (source, bundlestore). It is imported
// by tests only.
package sourcetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

// Registry is go-containerregistry's registry served on 127.0.0.1. It
// counts Requests and lets a test take over some of them (hook returns true
// when it answered).
type Registry struct {
	Srv  *httptest.Server
	Host string // 127.0.0.1:PORT

	ManifestGets atomic.Int64 // GET .../manifests/...
	TagGets      atomic.Int64 // GET .../manifests/<*.sig>
	BlobGets     atomic.Int64 // GET .../blobs/...

	mu        sync.Mutex
	hook      func(w http.ResponseWriter, r *http.Request) bool
	rewrite   func(r *http.Request, body []byte) []byte
	reqs      []string // "METHOD path?query"
	strip     string   // path prefix removed before the registry sees it
	add       string   // path prefix added (override_path tests)
	referrers bool     // serve the OCI 1.1 referrers API
}

type RegistryOption func(*Registry)

// WithReferrers switches go-containerregistry's referrers API on. Its
// listing reports a referrer's config media type as the artifact type (for
// cosign's bundles, the empty config's), unlike the spec and testenv's
// registry.
func WithReferrers() RegistryOption {
	return func(tr *Registry) { tr.referrers = true }
}

func WithPrefix(strip, add string) RegistryOption {
	return func(tr *Registry) { tr.strip, tr.add = strip, add }
}

func NewRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	tr := &Registry{}
	for _, o := range opts {
		o(tr)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(tr.referrers))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.reqs = append(tr.reqs, r.Method+" "+r.URL.RequestURI())
		hook, rewrite := tr.hook, tr.rewrite
		tr.mu.Unlock()
		if tr.strip != "" {
			if !strings.HasPrefix(r.URL.Path, tr.strip) {
				http.Error(w, "outside prefix", http.StatusNotFound)
				return
			}
			r.URL.Path = tr.add + strings.TrimPrefix(r.URL.Path, tr.strip)
			r.URL.RawPath = ""
		}
		if r.Method == http.MethodGet {
			switch {
			case strings.Contains(r.URL.Path, "/manifests/"):
				tr.ManifestGets.Add(1)
				if strings.HasSuffix(r.URL.Path, ".sig") {
					tr.TagGets.Add(1)
				}
			case strings.Contains(r.URL.Path, "/blobs/"):
				tr.BlobGets.Add(1)
			}
		}
		if hook != nil && hook(w, r) {
			return
		}
		if rewrite != nil && r.Method == http.MethodGet {
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, r)
			body := rewrite(r, rec.Body.Bytes())
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			w.Write(body)
			return
		}
		reg.ServeHTTP(w, r)
	})
	tr.Srv = httptest.NewServer(h)
	tr.Host = strings.TrimPrefix(tr.Srv.URL, "http://")
	t.Cleanup(tr.Srv.Close)
	return tr
}

func (tr *Registry) SetHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.hook = h
}

// SetRewrite lets a test change the body of GET replies.
func (tr *Registry) SetRewrite(f func(r *http.Request, body []byte) []byte) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.rewrite = f
}

func (tr *Registry) Requests() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.reqs...)
}

// DeadHost returns a 127.0.0.1 address on which nothing listens.
func DeadHost(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// PushImage writes a random image to host/repo and returns its digest
// reference (named at host, which may differ from where it is stored).
func PushImage(t testing.TB, storeHost, nameHost, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	Write(t, storeHost+"/"+repo+":latest", img)
	d, err := name.NewDigest(nameHost + "/" + repo + "@" + h.String())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Write pushes img at ref.
func Write(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// Sig is one signature layer as the test wrote it.
type Sig struct {
	Payload     []byte
	Signature   []byte // raw; the annotation holds it in base64
	RawB64      string // when set, the annotation value instead of signature
	Certificate string
	Chain       string
	Bundle      string
	Timestamp   string
}

// SimpleSigning returns a cosign simple-signing payload for image.
func SimpleSigning(image name.Digest) []byte {
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`,
		image.Context().String(), image.DigestStr())
}

// SignWithKey makes a real ECDSA P-256 signature over payload, as cosign
// does with a key.
func SignWithKey(t testing.TB, key *ecdsa.PrivateKey, payload []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// SignatureImage builds the manifest cosign pushes at the signature tag.
func SignatureImage(t testing.TB, sigs ...Sig) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, s := range sigs {
		ann := map[string]string{}
		if s.RawB64 != "" {
			ann[ocimaterial.AnnotationSignature] = s.RawB64
		} else {
			ann[ocimaterial.AnnotationSignature] = base64.StdEncoding.EncodeToString(s.Signature)
		}
		if s.Certificate != "" {
			ann[ocimaterial.AnnotationCertificate] = s.Certificate
		}
		if s.Chain != "" {
			ann[ocimaterial.AnnotationChain] = s.Chain
		}
		if s.Bundle != "" {
			ann[ocimaterial.AnnotationBundle] = s.Bundle
		}
		if s.Timestamp != "" {
			ann[ocimaterial.AnnotationTimestamp] = s.Timestamp
		}
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:       static.NewLayer(s.Payload, ocimaterial.SimpleSigningMediaType),
			Annotations: ann,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// PushSignatures writes sigs at image's signature tag on storeHost.
func PushSignatures(t testing.TB, storeHost string, image name.Digest, sigs ...Sig) {
	t.Helper()
	tag := strings.Replace(image.DigestStr(), ":", "-", 1) + ".sig"
	Write(t, storeHost+"/"+image.RepositoryStr()+":"+tag, SignatureImage(t, sigs...))
}

// WriteHosts writes <dir>/<host>/hosts.toml and returns dir.
func WriteHosts(t testing.TB, dir, host, toml string) string {
	t.Helper()
	d := filepath.Join(dir, host)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rawManifest is a manifest pushed byte for byte.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// PutBlob uploads b to host/repo and returns its descriptor.
func PutBlob(t testing.TB, host, repo string, b []byte, mt types.MediaType) v1.Descriptor {
	t.Helper()
	r, err := name.NewRepository(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	l := static.NewLayer(b, mt)
	if err := remote.WriteLayer(r, l); err != nil {
		t.Fatal(err)
	}
	h, _ := l.Digest()
	return v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: h}
}

// PutManifest pushes body to host/repo by its digest, or at tag when given,
// and returns its digest. go-containerregistry keeps the referrers tag
// fallback index up to date when the manifest has a subject and the
// registry has no referrers API, as cosign's pushes do.
func PutManifest(t testing.TB, host, repo, tag string, body []byte, mt types.MediaType) v1.Hash {
	t.Helper()
	h := DigestOf(body)
	ref := host + "/" + repo + "@" + h.String()
	if tag != "" {
		ref = host + "/" + repo + ":" + tag
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawManifest{body: body, mt: mt}); err != nil {
		t.Fatal(err)
	}
	return h
}

// Referrer describes a referrer manifest for PushReferrer.
type Referrer struct {
	ArtifactType string // the manifest's artifactType; "" for none
	ConfigType   string // default the empty config
	LayerType    string // default artifactType
	Layers       [][]byte
	Subject      string // default the image's digest
	Annotations  map[string]string
}

// PushReferrer writes a referrer manifest (and its blobs) for image, laid
// out as cosign writes a bundle, and returns its digest.
func PushReferrer(t testing.TB, host string, image name.Digest, r Referrer) v1.Hash {
	t.Helper()
	repo := image.RepositoryStr()
	if r.ConfigType == "" {
		r.ConfigType = ocimaterial.MediaTypeEmptyConfig
	}
	if r.LayerType == "" {
		r.LayerType = r.ArtifactType
	}
	if r.Subject == "" {
		r.Subject = image.DigestStr()
	}
	config := PutBlob(t, host, repo, []byte("{}"), types.MediaType(r.ConfigType))
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocimaterial.MediaTypeOCIManifest,
		"config":        config,
		"subject":       map[string]any{"mediaType": ocimaterial.MediaTypeOCIManifest, "size": 1, "digest": r.Subject},
	}
	layers := []v1.Descriptor{}
	for _, b := range r.Layers {
		layers = append(layers, PutBlob(t, host, repo, b, types.MediaType(r.LayerType)))
	}
	m["layers"] = layers
	if r.ArtifactType != "" {
		m["artifactType"] = r.ArtifactType
	}
	if r.Annotations != nil {
		m["annotations"] = r.Annotations
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return PutManifest(t, host, repo, "", body, types.OCIManifestSchema1)
}

// FakeBundle is bundle-shaped JSON; nothing here verifies it.
func FakeBundle(n int) []byte {
	return fmt.Appendf(nil, `{"mediaType":%q,"n":%d}`, ocimaterial.BundleMediaTypeV03Alt, n)
}

// DigestOf is the sha256 digest of b.
func DigestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// PathPrefix is the prefix the registry expects before /v2/ (WithPrefix).
func (tr *Registry) PathPrefix() string { return tr.strip }

// Att is one layer of an attestation manifest as the test writes it.
type Att struct {
	Envelope  []byte
	MediaType string // default ocimaterial.DSSEMediaType
	Ann       map[string]string
}

// PushAttestations writes atts at image's attestation tag, laid out as
// cosign attest writes them.
func PushAttestations(t testing.TB, host string, image name.Digest, atts ...Att) {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, a := range atts {
		mt := a.MediaType
		if mt == "" {
			mt = ocimaterial.DSSEMediaType
		}
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(a.Envelope, types.MediaType(mt)), Annotations: a.Ann})
		if err != nil {
			t.Fatal(err)
		}
	}
	tag := strings.Replace(image.DigestStr(), ":", "-", 1) + ".att"
	Write(t, host+"/"+image.RepositoryStr()+":"+tag, img)
}

// Envelope is a DSSE envelope shaped like cosign attest's; nothing here
// verifies it.
func Envelope(n int) []byte {
	return fmt.Appendf(nil, `{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"%d"}]}`, n)
}
