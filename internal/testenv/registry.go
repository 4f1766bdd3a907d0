package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RegistryOptions chooses how the test registry behaves.
type RegistryOptions struct {
	// Referrers serves the OCI 1.1 referrers API; off, clients must use
	// cosign's tag fallback, as with registries that lack it.
	Referrers bool
}

// Registry is go-containerregistry's in-memory registry served over plain
// HTTP on 127.0.0.1. It can be stopped and started again on the same address
// with the same content, so tests can take the "network" away from a node and
// give it back.
type Registry struct {
	// Addr is "127.0.0.1:PORT"; image references are Addr + "/" + repo.
	Addr string

	handler     http.Handler
	referrers   bool
	requests    atomic.Int64
	notModified atomic.Int64
	latency     atomic.Int64 // added before every reply, nanoseconds
	logMu       sync.Mutex
	log         []string                  // "METHOD path" of every request, in order
	auth        atomic.Pointer[[2]string] // user and password required, when set
	transport   *http.Transport

	mu      sync.Mutex
	srv     *http.Server
	serveCh chan struct{} // closed when the current Serve returns
	closed  bool
}

// opTimeout bounds each registry operation of the helpers below, so a wedged
// test fails instead of hanging until the test binary's timeout.
const opTimeout = 2 * time.Minute

// ErrRegistryClosed is returned by Start after Close.
var ErrRegistryClosed = errors.New("registry closed")

// StartRegistry starts a registry on a free port of 127.0.0.1.
func StartRegistry(opts RegistryOptions) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}
	r := &Registry{
		Addr: ln.Addr().String(),
		handler: registry.New(
			registry.Logger(log.New(io.Discard, "", 0)),
			registry.WithReferrersSupport(opts.Referrers),
		),
		referrers: opts.Referrers,
	}
	r.transport = http.DefaultTransport.(*http.Transport).Clone()
	r.transport.Proxy = nil // the registry is local; a proxy in the environment must not be asked
	r.serve(ln)
	return r, nil
}

// NewRegistry starts a registry that is closed when the test ends.
func NewRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	r, err := StartRegistry(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close registry: %v", err)
		}
	})
	return r
}

func (r *Registry) serve(ln net.Listener) {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.requests.Add(1)
			if d := time.Duration(r.latency.Load()); d > 0 {
				time.Sleep(d)
			}
			r.logMu.Lock()
			r.log = append(r.log, req.Method+" "+req.URL.Path)
			r.logMu.Unlock()
			if a := r.auth.Load(); a != nil {
				if u, p, ok := req.BasicAuth(); !ok || u != a[0] || p != a[1] {
					w.Header().Set("WWW-Authenticate", `Basic realm="sealgate-test"`)
					http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
					return
				}
			}
			if req.Method == http.MethodGet && (isReferrersPath(req.URL.Path) || strings.Contains(req.URL.Path, "/manifests/")) {
				// Manifests and referrer listings carry an ETag and
				// honour If-None-Match, as distribution's registry does.
				r.serveWithETag(w, req)
				return
			}
			r.handler.ServeHTTP(w, req)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	r.srv, r.serveCh = srv, done
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns http.ErrServerClosed on Stop
	}()
}

// Stop stops serving: the port refuses connections and open connections are
// closed. The content is kept for Start.
func (r *Registry) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopLocked()
}

func (r *Registry) stopLocked() error {
	if r.srv == nil {
		return nil
	}
	err := r.srv.Close()
	<-r.serveCh
	r.srv, r.serveCh = nil, nil
	r.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("stop registry: %w", err)
	}
	return nil
}

// Start serves the same content again on the same address after Stop. It
// retries briefly in case the kernel has not released the port yet.
func (r *Registry) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("start registry: %w", ErrRegistryClosed)
	}
	if r.srv != nil {
		return nil
	}
	var (
		ln  net.Listener
		err error
	)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err = net.Listen("tcp", r.Addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("start registry on %s: %w", r.Addr, err)
	}
	r.serve(ln)
	return nil
}

// Close stops the registry for good.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return r.stopLocked()
}

// Requests returns how many HTTP requests the registry has served, so tests
// can assert that a cached decision did not reach the registry.
func (r *Registry) Requests() int64 { return r.requests.Load() }

// SetLatency delays every later reply by d: a registry d away (the load
// driver measures with 20 ms).
func (r *Registry) SetLatency(d time.Duration) { r.latency.Store(int64(d)) }

// RequestsSince is "METHOD path" of every request after the first n, in
// order (n from Requests), for tests that say which requests were made.
func (r *Registry) RequestsSince(n int64) []string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if int(n) >= len(r.log) {
		return nil
	}
	return append([]string(nil), r.log[n:]...)
}

// Ref returns the full reference of repoTag ("repo:tag", "repo@digest" or a
// bare repository) in this registry.
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + repoTag }

func (r *Registry) remoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(r.transport)}
	if a := r.auth.Load(); a != nil {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: a[0], Password: a[1]}))
	}
	return opts
}

// RequireAuth makes every request need HTTP basic authentication as user
// with password (a private registry); an empty user lifts it.
func (r *Registry) RequireAuth(user, password string) {
	if user == "" {
		r.auth.Store(nil)
		return
	}
	r.auth.Store(&[2]string{user, password})
}

// parse parses a reference that must name this registry; the input is either
// a full reference or one relative to this registry.
func (r *Registry) parse(ref string) (name.Reference, error) {
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	if parsed.Context().RegistryStr() != r.Addr {
		// "app:v1" parses as a Docker Hub reference: make it ours.
		parsed, err = name.ParseReference(r.Ref(ref), name.Insecure)
		if err != nil {
			return nil, err
		}
	}
	return parsed, nil
}

// Push writes img with its blobs to repoTag ("repo:tag") and returns the
// image's digest reference (repo@sha256:...).
func (r *Registry) Push(img v1.Image, repoTag string) (name.Digest, error) {
	ref, err := r.parse(repoTag)
	if err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", repoTag, err)
	}
	h, err := img.Digest()
	if err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", repoTag, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := remote.Write(ref, img, r.remoteOptions(ctx)...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.Context().Digest(h.String()), nil
}

// PushIndex writes idx, its child manifests and their blobs to repoTag and
// returns the index's digest reference.
func (r *Registry) PushIndex(idx v1.ImageIndex, repoTag string) (name.Digest, error) {
	ref, err := r.parse(repoTag)
	if err != nil {
		return name.Digest{}, fmt.Errorf("push index %s: %w", repoTag, err)
	}
	h, err := idx.Digest()
	if err != nil {
		return name.Digest{}, fmt.Errorf("push index %s: %w", repoTag, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := remote.WriteIndex(ref, idx, r.remoteOptions(ctx)...); err != nil {
		return name.Digest{}, fmt.Errorf("push index %s: %w", ref, err)
	}
	return ref.Context().Digest(h.String()), nil
}

// Tag points tag, in src's repository, at src's manifest.
func (r *Registry) Tag(src name.Digest, tag string) error {
	if src.Context().RegistryStr() != r.Addr {
		return fmt.Errorf("tag %s as %s: not in registry %s", src, tag, r.Addr)
	}
	dst, err := name.NewTag(src.Context().String()+":"+tag, name.Insecure)
	if err != nil {
		return fmt.Errorf("tag %s as %s: %w", src, tag, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	desc, err := remote.Get(src, r.remoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("tag %s as %s: %w", src, tag, err)
	}
	if err := remote.Tag(dst, desc, r.remoteOptions(ctx)...); err != nil {
		return fmt.Errorf("tag %s as %s: %w", src, tag, err)
	}
	return nil
}

// CopyManifest copies the manifest srcRef names, and whatever it references,
// to dstRef — for example a signature tag onto another digest's signature tag,
// to test that a signature for one image does not pass for another. Both refs
// are in this registry, written in full or relative to it.
func (r *Registry) CopyManifest(srcRef, dstRef string) error {
	src, err := r.parse(srcRef)
	if err != nil {
		return fmt.Errorf("copy %s: %w", srcRef, err)
	}
	dst, err := r.parse(dstRef)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dstRef, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	desc, err := remote.Get(src, r.remoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := remote.Push(dst, desc, r.remoteOptions(ctx)...); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// Delete deletes the manifest or tag ref names. Deleting a digest leaves the
// tags that point at it in place, as the underlying registry does.
func (r *Registry) Delete(ref string) error {
	parsed, err := r.parse(ref)
	if err != nil {
		return fmt.Errorf("delete %s: %w", ref, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := remote.Delete(parsed, r.remoteOptions(ctx)...); err != nil {
		return fmt.Errorf("delete %s: %w", parsed, err)
	}
	return nil
}

// isReferrersPath reports whether p is /v2/<repo>/referrers/<digest>.
func isReferrersPath(p string) bool {
	elems := strings.Split(strings.TrimPrefix(p, "/"), "/")
	return len(elems) >= 4 && elems[0] == "v2" && elems[len(elems)-2] == "referrers"
}

// serveReferrers answers the referrers API as the OCI distribution spec 1.1
// says, where go-containerregistry's registry does not: a descriptor's
// artifactType is the manifest's artifactType when it has one (the registry
// reports the config media type, which for cosign bundles is the empty
// config), and the artifactType query filter is applied. Without this, a
// client that filters on the bundle artifact type would find nothing here and
// everything on a real registry.
func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request) {
	rec := httptest.NewRecorder()
	r.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		copyResponse(w, rec)
		return
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(rec.Body.Bytes(), &idx); err != nil {
		copyResponse(w, rec)
		return
	}
	elems := strings.Split(strings.TrimPrefix(req.URL.Path, "/"), "/")
	repo := strings.Join(elems[1:len(elems)-2], "/")
	want := req.URL.Query().Get("artifactType")
	kept := idx.Manifests[:0]
	for _, d := range idx.Manifests {
		mreq := httptest.NewRequest(http.MethodGet, "/v2/"+repo+"/manifests/"+d.Digest.String(), nil)
		mrec := httptest.NewRecorder()
		r.handler.ServeHTTP(mrec, mreq)
		var m struct {
			ArtifactType string `json:"artifactType"`
		}
		if mrec.Code == http.StatusOK && json.Unmarshal(mrec.Body.Bytes(), &m) == nil && m.ArtifactType != "" {
			d.ArtifactType = m.ArtifactType
		}
		if want == "" || d.ArtifactType == want {
			kept = append(kept, d)
		}
	}
	idx.Manifests = kept
	body, err := json.Marshal(&idx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if want != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", string(types.OCIImageIndex))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// serveWithETag serves a manifest or a referrers listing with an ETag (the
// quoted digest of the body) and answers 304 Not Modified when the request's
// If-None-Match names it.
func (r *Registry) serveWithETag(w http.ResponseWriter, req *http.Request) {
	rec := httptest.NewRecorder()
	if r.referrers && isReferrersPath(req.URL.Path) {
		r.serveReferrers(rec, req)
	} else {
		r.handler.ServeHTTP(rec, req)
	}
	if rec.Code == http.StatusOK {
		etag := `"sha256:` + fmt.Sprintf("%x", sha256.Sum256(rec.Body.Bytes())) + `"`
		rec.Header().Set("ETag", etag)
		if slices.Contains(strings.Split(req.Header.Get("If-None-Match"), ", "), etag) {
			r.notModified.Add(1)
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	copyResponse(w, rec)
}

// NotModified is how many requests were answered 304 Not Modified.
func (r *Registry) NotModified() int64 { return r.notModified.Load() }

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}
