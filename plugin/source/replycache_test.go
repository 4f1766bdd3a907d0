package source

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReplyCache drives hostTransport against a registry that counts what
// it is asked: content by digest is asked once, and only when it hashes to
// its digest; a reply with an ETag is revalidated, and a changed one is
// read anew.
func TestReplyCache(t *testing.T) {
	good := []byte(`{"bundle":"one"}`)
	goodHex := fmt.Sprintf("%x", sha256.Sum256(good))
	badHex := fmt.Sprintf("%x", sha256.Sum256([]byte("what the digest names")))
	var mu sync.Mutex
	asked := map[string]int{}
	listing := "v1"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		asked[r.URL.Path]++
		switch {
		case strings.HasSuffix(r.URL.Path, goodHex):
			w.Write(good)
		case strings.HasSuffix(r.URL.Path, badHex):
			w.Write([]byte("not what the digest names"))
		case strings.HasSuffix(r.URL.Path, "/manifests/sha256-abc.sig"):
			etag := `"` + listing + `"`
			w.Header().Set("ETag", etag)
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "listing "+listing)
		case strings.HasSuffix(r.URL.Path, "/manifests/latest"):
			io.WriteString(w, "no etag")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tr := &hostTransport{from: "reg.example", scheme: "http", host: strings.TrimPrefix(srv.URL, "http://"), path: "/v2",
		timeout: 5 * time.Second, limit: 1 << 20, base: http.DefaultTransport, replies: &replyCache{}}
	client := &http.Client{Transport: tr}
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get("http://reg.example/v2/repo" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			return resp.Status
		}
		return string(b)
	}
	tests := []struct {
		name      string
		path      string
		change    string // the listing's new version before the second read
		want      string
		wantAsked int // after two reads
	}{
		{name: "blob by digest kept", path: "/blobs/sha256:" + goodHex, want: string(good), wantAsked: 1},
		{name: "manifest by digest kept", path: "/manifests/sha256:" + goodHex, want: string(good), wantAsked: 1},
		{name: "body not hashing to its digest never kept", path: "/blobs/sha256:" + badHex, want: "not what the digest names", wantAsked: 2},
		{name: "listing revalidated", path: "/manifests/sha256-abc.sig", want: "listing v1", wantAsked: 2},
		{name: "changed listing read anew", path: "/manifests/sha256-abc.sig", change: "v2", want: "listing v2", wantAsked: 2},
		{name: "no etag, asked each time", path: "/manifests/latest", want: "no etag", wantAsked: 2},
		{name: "404 not kept", path: "/blobs/sha256:" + strings.Repeat("0", 64), want: "404 Not Found", wantAsked: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			asked = map[string]int{}
			mu.Unlock()
			first := get(tc.path)
			if tc.change != "" {
				mu.Lock()
				listing = tc.change
				mu.Unlock()
			}
			if got := get(tc.path); got != tc.want {
				t.Errorf("second read %q, want %q (first %q)", got, tc.want, first)
			}
			mu.Lock()
			defer mu.Unlock()
			if n := asked["/v2/repo"+tc.path]; n != tc.wantAsked {
				t.Errorf("asked %d times, want %d", n, tc.wantAsked)
			}
		})
	}
}

// TestReplyCacheBounded: the kept replies stay within replyCacheBytes, the
// least recently used dropped first.
func TestReplyCacheBounded(t *testing.T) {
	var c replyCache
	body := make([]byte, 64<<10)
	n := 2 * replyCacheBytes / len(body)
	for i := range n {
		c.put(&keptReply{key: fmt.Sprint(i), immutable: true, body: body})
		if i == 0 {
			continue
		}
		c.get("0") // keep the first one in use
	}
	if c.size > replyCacheBytes {
		t.Errorf("kept %d bytes, bound %d", c.size, replyCacheBytes)
	}
	if c.get("0") == nil {
		t.Error("the most recently used reply was dropped")
	}
	if c.get("1") != nil {
		t.Error("the least recently used reply was kept past the bound")
	}
	c.put(&keptReply{key: "huge", body: make([]byte, replyCacheEntryBytes+1)})
	if c.get("huge") != nil {
		t.Error("a reply past replyCacheEntryBytes was kept")
	}
}
