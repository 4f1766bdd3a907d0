package source

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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

// testRegistry is go-containerregistry's registry served on 127.0.0.1. It
// counts requests and lets a test take over some of them (hook returns true
// when it answered).
type testRegistry struct {
	srv  *httptest.Server
	host string // 127.0.0.1:PORT

	manifestGets atomic.Int64 // GET .../manifests/...
	tagGets      atomic.Int64 // GET .../manifests/<*.sig>
	blobGets     atomic.Int64 // GET .../blobs/...

	mu        sync.Mutex
	hook      func(w http.ResponseWriter, r *http.Request) bool
	rewrite   func(r *http.Request, body []byte) []byte
	reqs      []string // "METHOD path?query"
	strip     string   // path prefix removed before the registry sees it
	add       string   // path prefix added (override_path tests)
	referrers bool     // serve the OCI 1.1 referrers API
}

type registryOption func(*testRegistry)

// withReferrers switches go-containerregistry's referrers API on. Its
// listing reports a referrer's config media type as the artifact type (for
// cosign's bundles, the empty config's), unlike the spec and testenv's
// registry.
func withReferrers() registryOption {
	return func(tr *testRegistry) { tr.referrers = true }
}

func withPrefix(strip, add string) registryOption {
	return func(tr *testRegistry) { tr.strip, tr.add = strip, add }
}

func newTestRegistry(t testing.TB, opts ...registryOption) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
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
				tr.manifestGets.Add(1)
				if strings.HasSuffix(r.URL.Path, ".sig") {
					tr.tagGets.Add(1)
				}
			case strings.Contains(r.URL.Path, "/blobs/"):
				tr.blobGets.Add(1)
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
	tr.srv = httptest.NewServer(h)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	t.Cleanup(tr.srv.Close)
	return tr
}

func (tr *testRegistry) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.hook = h
}

// setRewrite lets a test change the body of GET replies.
func (tr *testRegistry) setRewrite(f func(r *http.Request, body []byte) []byte) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.rewrite = f
}

func (tr *testRegistry) requests() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.reqs...)
}

// deadHost returns a 127.0.0.1 address on which nothing listens.
func deadHost(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// pushImage writes a random image to host/repo and returns its digest
// reference (named at host, which may differ from where it is stored).
func pushImage(t testing.TB, storeHost, nameHost, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	write(t, storeHost+"/"+repo+":latest", img)
	d, err := name.NewDigest(nameHost + "/" + repo + "@" + h.String())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func write(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// testSig is one signature layer as the test wrote it.
type testSig struct {
	payload     []byte
	signature   []byte // raw; the annotation holds it in base64
	rawB64      string // when set, the annotation value instead of signature
	certificate string
	chain       string
	bundle      string
	timestamp   string
}

// simpleSigning returns a cosign simple-signing payload for image.
func simpleSigning(image name.Digest) []byte {
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`,
		image.Context().String(), image.DigestStr())
}

// signWithKey makes a real ECDSA P-256 signature over payload, as cosign
// does with a key.
func signWithKey(t testing.TB, key *ecdsa.PrivateKey, payload []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signatureImage builds the manifest cosign pushes at the signature tag.
func signatureImage(t testing.TB, sigs ...testSig) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, s := range sigs {
		ann := map[string]string{}
		if s.rawB64 != "" {
			ann[ocimaterial.AnnotationSignature] = s.rawB64
		} else {
			ann[ocimaterial.AnnotationSignature] = base64.StdEncoding.EncodeToString(s.signature)
		}
		if s.certificate != "" {
			ann[ocimaterial.AnnotationCertificate] = s.certificate
		}
		if s.chain != "" {
			ann[ocimaterial.AnnotationChain] = s.chain
		}
		if s.bundle != "" {
			ann[ocimaterial.AnnotationBundle] = s.bundle
		}
		if s.timestamp != "" {
			ann[ocimaterial.AnnotationTimestamp] = s.timestamp
		}
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:       static.NewLayer(s.payload, ocimaterial.SimpleSigningMediaType),
			Annotations: ann,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// pushSignatures writes sigs at image's signature tag on storeHost.
func pushSignatures(t testing.TB, storeHost string, image name.Digest, sigs ...testSig) {
	t.Helper()
	tag, err := SignatureTag(image)
	if err != nil {
		t.Fatal(err)
	}
	write(t, storeHost+"/"+image.RepositoryStr()+":"+tag.TagStr(), signatureImage(t, sigs...))
}

// writeHosts writes <dir>/<host>/hosts.toml and returns dir.
func writeHosts(t testing.TB, dir, host, toml string) string {
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

func newTestSource(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	// An empty certs.d by default, so the host's own configuration does
	// not leak into tests.
	opts = append([]Option{WithHostsDir(t.TempDir())}, opts...)
	r, err := NewRegistry(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rawManifest is a manifest pushed byte for byte.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// putBlob uploads b to host/repo and returns its descriptor.
func putBlob(t testing.TB, host, repo string, b []byte, mt types.MediaType) v1.Descriptor {
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

// putManifest pushes body to host/repo by its digest, or at tag when given,
// and returns its digest. go-containerregistry keeps the referrers tag
// fallback index up to date when the manifest has a subject and the
// registry has no referrers API, as cosign's pushes do.
func putManifest(t testing.TB, host, repo, tag string, body []byte, mt types.MediaType) v1.Hash {
	t.Helper()
	h := digestOf(body)
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

// testReferrer describes a referrer manifest for pushReferrer.
type testReferrer struct {
	artifactType string // the manifest's artifactType; "" for none
	configType   string // default the empty config
	layerType    string // default artifactType
	layers       [][]byte
	subject      string // default the image's digest
	annotations  map[string]string
}

// pushReferrer writes a referrer manifest (and its blobs) for image, laid
// out as cosign writes a bundle, and returns its digest.
func pushReferrer(t testing.TB, host string, image name.Digest, r testReferrer) v1.Hash {
	t.Helper()
	repo := image.RepositoryStr()
	if r.configType == "" {
		r.configType = ocimaterial.MediaTypeEmptyConfig
	}
	if r.layerType == "" {
		r.layerType = r.artifactType
	}
	if r.subject == "" {
		r.subject = image.DigestStr()
	}
	config := putBlob(t, host, repo, []byte("{}"), types.MediaType(r.configType))
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocimaterial.MediaTypeOCIManifest,
		"config":        config,
		"subject":       map[string]any{"mediaType": ocimaterial.MediaTypeOCIManifest, "size": 1, "digest": r.subject},
	}
	layers := []v1.Descriptor{}
	for _, b := range r.layers {
		layers = append(layers, putBlob(t, host, repo, b, types.MediaType(r.layerType)))
	}
	m["layers"] = layers
	if r.artifactType != "" {
		m["artifactType"] = r.artifactType
	}
	if r.annotations != nil {
		m["annotations"] = r.annotations
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return putManifest(t, host, repo, "", body, types.OCIManifestSchema1)
}

// fakeBundle is bundle-shaped JSON; nothing here verifies it.
func fakeBundle(n int) []byte {
	return fmt.Appendf(nil, `{"mediaType":%q,"n":%d}`, ocimaterial.BundleMediaTypeV03Alt, n)
}
