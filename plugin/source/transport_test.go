package source

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// recorder is the base transport for unit tests of hostTransport: it records
// the request it was given and answers with body.
type recorder struct {
	got  *http.Request
	body string
	size int64 // Content-Length; -1 unknown
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.got = req
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(r.body)), ContentLength: r.size, Request: req}, nil
}

func TestHostTransportRewrite(t *testing.T) {
	tests := []struct {
		name    string
		tr      hostTransport
		in      string
		want    string
		wantHdr string
	}{
		{name: "server", tr: hostTransport{from: "reg.example", scheme: "https", host: "mirror:5000", path: "/v2"},
			in: "http://reg.example/v2/app/manifests/latest", want: "https://mirror:5000/v2/app/manifests/latest"},
		{name: "path prefix", tr: hostTransport{from: "reg.example", scheme: "http", host: "m", path: "/prefix/v2"},
			in: "https://reg.example/v2/app/blobs/sha256:1", want: "http://m/prefix/v2/app/blobs/sha256:1"},
		{name: "override_path", tr: hostTransport{from: "reg.example", scheme: "https", host: "m", path: "/custom/api"},
			in: "https://reg.example/v2/", want: "https://m/custom/api/"},
		{name: "mirror ns and header", tr: hostTransport{from: "m", scheme: "https", host: "m", path: "/v2", ns: "docker.io", header: http.Header{"X-Mirror": {"1"}}},
			in: "https://m/v2/library/nginx/manifests/1", want: "https://m/v2/library/nginx/manifests/1?ns=docker.io", wantHdr: "1"},
		{name: "token realm untouched", tr: hostTransport{from: "reg.example", scheme: "http", host: "m", path: "/p/v2", ns: "x", header: http.Header{"X-Mirror": {"1"}}},
			in: "https://auth.example/token?scope=x", want: "https://auth.example/token?scope=x"},
		{name: "not under /v2", tr: hostTransport{from: "reg.example", scheme: "http", host: "m", path: "/p/v2"},
			in: "https://reg.example/v2x/y", want: "http://m/v2x/y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{size: -1}
			tr := tc.tr
			tr.base, tr.timeout, tr.limit = rec, time.Second, 1024
			req, _ := http.NewRequest(http.MethodGet, tc.in, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := rec.got.URL.String(); got != tc.want {
				t.Errorf("URL = %s, want %s", got, tc.want)
			}
			if got := rec.got.Header.Get("X-Mirror"); got != tc.wantHdr {
				t.Errorf("header = %q, want %q", got, tc.wantHdr)
			}
			if req.URL.String() != tc.in || len(req.Header) != 0 {
				t.Errorf("the caller's request was modified: %s %v", req.URL, req.Header)
			}
		})
	}
}

func TestHostTransportLimits(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		size      int64
		ctxLimit  int64 // 0: none
		wantLimit bool
	}{
		{name: "within", body: "12345", size: -1},
		{name: "exactly", body: strings.Repeat("x", 8), size: -1},
		{name: "streamed over", body: strings.Repeat("x", 9), size: -1, wantLimit: true},
		{name: "declared over", body: "", size: 100, wantLimit: true},
		{name: "context limit lower", body: "12345", size: -1, ctxLimit: 4, wantLimit: true},
		{name: "context limit higher", body: strings.Repeat("x", 20), size: 20, ctxLimit: 32},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &hostTransport{from: "r", scheme: "http", host: "r", path: "/v2", timeout: time.Second, limit: 8,
				base: &recorder{body: tc.body, size: tc.size}}
			ctx := context.Background()
			if tc.ctxLimit != 0 {
				ctx = withBodyLimit(ctx, tc.ctxLimit)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://r/v2/x/manifests/y", nil)
			var b []byte
			resp, err := tr.RoundTrip(req)
			if err == nil {
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if errors.Is(err, ErrLimit) != tc.wantLimit {
				t.Fatalf("err = %v, want ErrLimit %v", err, tc.wantLimit)
			}
			if err == nil && string(b) != tc.body {
				t.Fatalf("body = %q", b)
			}
		})
	}
}

// hangingBody never returns data until its context ends.
type hanging struct{}

func (hanging) RoundTrip(req *http.Request) (*http.Response, error) {
	<-req.Context().Done()
	return nil, req.Context().Err()
}

func TestHostTransportTimeout(t *testing.T) {
	tr := &hostTransport{from: "r", scheme: "http", host: "r", path: "/v2", timeout: 20 * time.Millisecond, limit: 8, base: hanging{}}
	req, _ := http.NewRequest(http.MethodGet, "http://r/v2/", nil)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, errRequestTimeout) || classify(err) != outcomeUnreachable {
		t.Fatalf("own timeout: %v", err)
	}
	// The caller's own cancellation is not a timeout of the host.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "http://r/v2/", nil)
	_, err = tr.RoundTrip(req)
	if errors.Is(err, errRequestTimeout) || classify(err) == outcomeUnreachable {
		t.Fatalf("caller cancelled: %v", err)
	}
}

func TestClassify(t *testing.T) {
	u, _ := url.Parse("http://r/v2/")
	req := &http.Request{Method: http.MethodGet, URL: u}
	status := func(code int, codes ...transport.ErrorCode) error {
		e := &transport.Error{StatusCode: code, Request: req}
		for _, c := range codes {
			e.Errors = append(e.Errors, transport.Diagnostic{Code: c})
		}
		return fmt.Errorf("get: %w", e)
	}
	refused := &url.Error{Op: "Get", URL: "http://r/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want outcome
	}{
		{"nil", nil, outcomeFound},
		{"404", status(404), outcomeNotFound},
		{"manifest unknown on 400", status(400, transport.ManifestUnknownErrorCode), outcomeNotFound},
		{"name unknown", status(404, transport.NameUnknownErrorCode), outcomeNotFound},
		{"blob unknown", status(404, transport.BlobUnknownErrorCode), outcomeNotFound},
		{"500", status(500), outcomeUnreachable},
		{"503", status(503), outcomeUnreachable},
		{"429", status(429), outcomeUnreachable},
		{"401", status(401, transport.UnauthorizedErrorCode), outcomeFailed},
		{"403", status(403, transport.DeniedErrorCode), outcomeFailed},
		{"connection refused", refused, outcomeUnreachable},
		{"dns", &url.Error{Op: "Get", URL: "http://r/", Err: &net.DNSError{Err: "no such host", Name: "r", IsNotFound: true}}, outcomeUnreachable},
		{"request timeout", fmt.Errorf("x: %w", errRequestTimeout), outcomeUnreachable},
		{"tls handshake timeout", errors.New("net/http: TLS handshake timeout"), outcomeUnreachable},
		{"hung up", io.ErrUnexpectedEOF, outcomeUnreachable},
		{"unknown authority", &url.Error{Op: "Get", URL: "https://r/", Err: x509.UnknownAuthorityError{}}, outcomeFailed},
		{"limit", fmt.Errorf("x: %w", ErrLimit), outcomeFailed},
		{"caller cancelled", context.Canceled, outcomeFailed},
		{"other", errors.New("manifest: schemaVersion must be 2"), outcomeFailed},
	}
	for _, tc := range tests {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("%s: classify(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	nf, un, fl := errors.New("nf"), errors.New("un"), errors.New("fl")
	tests := []struct {
		name      string
		kinds     []outcome
		wantIs    error
		wantNotIs []error
	}{
		{"all not found", []outcome{outcomeNotFound, outcomeNotFound}, ErrNotFound, []error{ErrUnreachable}},
		{"all unreachable", []outcome{outcomeUnreachable, outcomeUnreachable}, ErrUnreachable, []error{ErrNotFound}},
		{"not found and unreachable", []outcome{outcomeNotFound, outcomeUnreachable}, ErrUnreachable, []error{ErrNotFound}},
		{"a failure wins", []outcome{outcomeUnreachable, outcomeFailed, outcomeNotFound}, fl, []error{ErrNotFound, ErrUnreachable}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var errs hostErrors
			for _, k := range tc.kinds {
				errs = append(errs, map[outcome]error{outcomeNotFound: nf, outcomeUnreachable: un, outcomeFailed: fl}[k])
			}
			err := summarize(errs, tc.kinds)
			if !errors.Is(err, tc.wantIs) {
				t.Errorf("%v is not %v", err, tc.wantIs)
			}
			for _, not := range tc.wantNotIs {
				if errors.Is(err, not) {
					t.Errorf("%v is %v", err, not)
				}
			}
		})
	}
}
