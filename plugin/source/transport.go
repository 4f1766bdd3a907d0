package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// errRequestTimeout marks a request that got no (complete) reply within the
// per-request timeout; it counts as an unreachable host.
var errRequestTimeout = errors.New("registry request timed out")

type bodyLimitKey struct{}

// withBodyLimit sets the largest reply body that requests made with ctx may
// read. go-containerregistry makes its requests with the context it is given,
// so this is how a manifest fetch and a payload fetch get different bounds.
func withBodyLimit(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, bodyLimitKey{}, n)
}

// hostTransport sends go-containerregistry's requests to one registry host of
// a containerd host configuration. go-containerregistry builds URLs as
// <scheme>://<registry>/v2/<repo>/...; requests for that registry are
// rewritten to the host's scheme, address and path prefix (server,
// override_path), carry the host's headers and, for a mirror, the "ns" query
// parameter containerd sends. Requests elsewhere (token realms, blob
// redirects) go out unchanged. Every request is bounded in time and every
// reply body in size.
type hostTransport struct {
	from    string // registry as go-containerregistry names it
	scheme  string
	host    string
	path    string // API root, "/v2" unless configured otherwise
	header  http.Header
	ns      string // upstream registry name, set for mirrors
	timeout time.Duration
	limit   int64 // body limit for contexts without withBodyLimit
	base    http.RoundTripper
	// state is what is learned about the host across calls; nil: nothing
	// is kept.
	state *hostState
	// observe, when set, is told about every request.
	observe RequestObserver
	// replies, when set, keeps replies that can serve again (replycache.go).
	replies *replyCache
}

// pingMemory is how long a host's reply at its API root is reused.
const pingMemory = 5 * time.Minute

// pingReply is a host's reply at its API root: its status and headers
// (the authentication challenge), without a body.
type pingReply struct {
	status int
	header http.Header
	until  time.Time
}

func (p *pingReply) reply(req *http.Request) *http.Response {
	return &http.Response{StatusCode: p.status, Status: strconv.Itoa(p.status) + " " + http.StatusText(p.status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: p.header.Clone(), Body: io.NopCloser(strings.NewReader("")), ContentLength: 0, Request: req}
}

// hostState is what a host's replies taught.
type hostState struct {
	ping atomic.Pointer[pingReply]
	// noReferrersUntil is when the host's 404 to the referrers API
	// (unix nanoseconds) stops being taken as "no referrers API here".
	noReferrersUntil atomic.Int64
}

// referrersAPIMemory is how long a host that answered the referrers API
// with 404 (OCI 1.1's "not supported") is asked only for the fallback tag.
const referrersAPIMemory = time.Hour

// lacksReferrersAPI reports whether the host said lately that it does not
// serve the referrers API.
func (t *hostTransport) lacksReferrersAPI() bool {
	return t.state != nil && time.Now().UnixNano() < t.state.noReferrersUntil.Load()
}

var _ http.RoundTripper = (*hostTransport)(nil)

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	limit := t.limit
	if n, ok := parent.Value(bodyLimitKey{}).(int64); ok {
		limit = n
	}
	ctx, cancel := context.WithTimeout(parent, t.timeout)
	out := req.Clone(ctx)
	ping := false
	if req.URL.Host == t.from {
		ping = req.Method == http.MethodGet && (req.URL.Path == "/v2/" || req.URL.Path == "/v2")
		t.rewrite(out)
	}
	what := out.Method + " " + redactURL(out.URL)
	if ping && t.state != nil {
		if p := t.state.ping.Load(); p != nil && time.Now().Before(p.until) {
			// go-containerregistry pings once per repository; what the
			// host's root said (open, or which challenge) holds for all.
			cancel()
			return p.reply(out), nil
		}
	}

	var kept *keptReply
	reusable := t.replies != nil && out.Method == http.MethodGet && req.URL.Host == t.from && !ping
	if reusable {
		if kept = t.replies.get(replyKey(out)); kept != nil && int64(len(kept.body)) <= limit {
			if kept.immutable {
				cancel()
				return kept.reply(out), nil
			}
			out.Header.Set("If-None-Match", kept.etag)
		} else {
			kept = nil
		}
	}

	sent := time.Now()
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		cancel()
		err = timeoutError(ctx, parent, t.timeout, err)
		if t.observe != nil {
			t.observe(t.host, time.Since(sent), err)
		}
		return nil, err
	}
	if t.observe != nil {
		t.observe(t.host, time.Since(sent), nil)
	}
	if kept != nil && resp.StatusCode == http.StatusNotModified {
		resp.Body.Close()
		cancel()
		return kept.reply(out), nil
	}
	if ping && t.state != nil && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized) {
		t.state.ping.Store(&pingReply{status: resp.StatusCode, header: resp.Header.Clone(), until: time.Now().Add(pingMemory)})
	}
	if t.state != nil && req.URL.Host == t.from && resp.StatusCode == http.StatusNotFound && req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/referrers/") {
		// A registry with the API answers an empty index; 404 is one
		// without it (go-containerregistry then reads the fallback tag).
		t.state.noReferrersUntil.Store(time.Now().Add(referrersAPIMemory).UnixNano())
	}
	if ping && resp.StatusCode == http.StatusNotFound {
		// go-containerregistry probes the API root before anything else;
		// containerd does not. A 404 there says nothing about what the
		// registry holds, so it must never read as "no signatures".
		resp.Body.Close()
		if !strings.HasSuffix(strings.TrimSuffix(t.path, "/"), "/v2") {
			// An override_path host, which need not answer its root
			// (containerd never asks): go on as with an open registry.
			cancel()
			return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}")), ContentLength: 2, Request: out}, nil
		}
		cancel()
		return nil, fmt.Errorf("%s: 404 Not Found at the registry API root: no registry API at %s (check the hosts.toml server, path and override_path)", what, t.host)
	}
	if out.Method != http.MethodHead && resp.ContentLength > limit {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%s: reply of %d bytes, limit %d: %w", what, resp.ContentLength, limit, ErrLimit)
	}
	resp.Body = &boundedBody{
		rc: resp.Body, limit: limit, what: what,
		ctx: ctx, parent: parent, cancel: cancel, timeout: t.timeout,
	}
	if reusable && resp.StatusCode == http.StatusOK {
		resp.Body = newKeepingBody(resp.Body, t.replies, out, resp)
	}
	return resp, nil
}

func (t *hostTransport) rewrite(r *http.Request) {
	r.URL.Scheme = t.scheme
	r.URL.Host = t.host
	r.Host = ""
	if p := r.URL.Path; p == "/v2" || strings.HasPrefix(p, "/v2/") {
		r.URL.Path = strings.TrimSuffix(t.path, "/") + strings.TrimPrefix(p, "/v2")
		r.URL.RawPath = ""
	}
	if t.ns != "" {
		q := r.URL.Query()
		q.Set("ns", t.ns)
		r.URL.RawQuery = q.Encode()
	}
	for k, vs := range t.header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
}

// timeoutError tells our own per-request timeout apart from the caller's
// context ending.
func timeoutError(ctx, parent context.Context, d time.Duration, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && parent.Err() == nil {
		return fmt.Errorf("no reply within %s: %w", d, errRequestTimeout)
	}
	return err
}

// boundedBody fails with ErrLimit once more than limit bytes have been read,
// and releases the request's timeout when closed.
type boundedBody struct {
	rc      io.ReadCloser
	n       int64
	limit   int64
	what    string
	ctx     context.Context
	parent  context.Context
	cancel  context.CancelFunc
	timeout time.Duration
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.n > b.limit {
		return 0, b.limitErr()
	}
	if rest := b.limit - b.n + 1; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.n > b.limit {
		return n, b.limitErr()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = timeoutError(b.ctx, b.parent, b.timeout, err)
	}
	return n, err
}

func (b *boundedBody) limitErr() error {
	return fmt.Errorf("%s: reply larger than %d bytes: %w", b.what, b.limit, ErrLimit)
}

func (b *boundedBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}

// redactURL drops the query, which may hold signed-URL tokens after a
// redirect.
func redactURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host + u.Path
}
