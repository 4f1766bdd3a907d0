package source

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// replyCacheBytes bounds the memory of the registry replies kept for
// reuse, bodies, keys and bookkeeping counted. Signature material is small
// (a listing, a bundle manifest and a bundle are a few KiB together), so
// this holds the material of a couple of hundred images: enough for the
// images a node decides again soon (a denial past its memory, a re-seal),
// not a copy of every image's material, which the verdicts already stand
// for.
const replyCacheBytes = 2 << 20

// replyEntryOverhead is what one kept reply costs beside its body and key:
// the entry, its list element, its map slot and its header strings.
const replyEntryOverhead = 256

// replyCacheEntryBytes is the largest reply kept.
const replyCacheEntryBytes = 256 << 10

// replyCache keeps registry replies that can serve again, so that deciding
// an image a second time costs one request (the listing, revalidated) or
// none, not three:
//
//   - content fetched by digest (a manifest or blob at .../sha256:<hex>)
//     whose bytes hash to that digest cannot change: it is served again
//     without asking;
//   - a reply with an ETag (a manifest by tag, a referrers listing) is asked
//     again with If-None-Match, and a 304 Not Modified is answered from the
//     kept body.
//
// Entries are keyed by the URL as sent (host, path, query) and the Accept
// header, and bounded in total size, least recently used dropped first.
// What is served from here is parsed and verified exactly as a reply from
// the network is; nothing kept can make a verification succeed that would
// fail on the registry's reply.
type replyCache struct {
	mu    sync.Mutex
	size  int64
	order list.List // front: most recently used
	m     map[string]*list.Element
}

type keptReply struct {
	key       string
	immutable bool
	etag      string
	// The reply headers go-containerregistry reads (keptHeaders).
	contentType, digest string
	body                []byte
}

// cost is what k holds in memory, as replyCacheBytes counts it.
func (k *keptReply) cost() int64 {
	return int64(len(k.body) + len(k.key) + len(k.etag) + len(k.contentType) + len(k.digest) + replyEntryOverhead)
}

func replyKey(req *http.Request) string {
	return req.URL.Scheme + "://" + req.URL.Host + req.URL.Path + "?" + req.URL.RawQuery + "\x00" + req.Header.Get("Accept")
}

// byDigest returns the hex SHA-256 digest a registry API path names
// (".../manifests/sha256:<hex>" or ".../blobs/sha256:<hex>"), or "".
func byDigest(path string) string {
	i := strings.LastIndex(path, "/sha256:")
	if i < 0 {
		return ""
	}
	head, hexd := path[:i], path[i+len("/sha256:"):]
	if len(hexd) != sha256.Size*2 || !(strings.HasSuffix(head, "/manifests") || strings.HasSuffix(head, "/blobs")) {
		return ""
	}
	if _, err := hex.DecodeString(hexd); err != nil {
		return ""
	}
	return hexd
}

func (c *replyCache) get(key string) *keptReply {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*keptReply)
}

func (c *replyCache) put(k *keptReply) {
	n := k.cost()
	if n > replyCacheEntryBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*list.Element)
	}
	if el, ok := c.m[k.key]; ok {
		c.size -= el.Value.(*keptReply).cost()
		c.order.Remove(el)
	}
	c.m[k.key] = c.order.PushFront(k)
	c.size += n
	for c.size > replyCacheBytes {
		last := c.order.Back()
		old := last.Value.(*keptReply)
		c.order.Remove(last)
		delete(c.m, old.key)
		c.size -= old.cost()
	}
}

// reply makes a 200 response from a kept reply.
func (k *keptReply) reply(req *http.Request) *http.Response {
	h := http.Header{"Content-Length": {strconv.Itoa(len(k.body))}}
	for _, kv := range [...][2]string{{"Content-Type", k.contentType}, {"Docker-Content-Digest", k.digest}, {"Etag", k.etag}} {
		if kv[1] != "" {
			h.Set(kv[0], kv[1])
		}
	}
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(k.body)), ContentLength: int64(len(k.body)), Request: req}
}

// keepingBody passes a 200 reply's body through and, when it was read to its
// end within replyCacheEntryBytes, keeps it: by digest only if it hashes to
// the digest its URL names, otherwise only with an ETag.
type keepingBody struct {
	io.ReadCloser
	cache *replyCache
	k     *keptReply
	want  string // hex digest the body must hash to; "" when not by digest
	buf   bytes.Buffer
	over  bool
}

func newKeepingBody(rc io.ReadCloser, c *replyCache, req *http.Request, resp *http.Response) io.ReadCloser {
	want := byDigest(req.URL.Path)
	etag := resp.Header.Get("ETag")
	if want == "" && etag == "" || resp.ContentLength > replyCacheEntryBytes {
		return rc
	}
	return &keepingBody{ReadCloser: rc, cache: c, want: want,
		k: &keptReply{key: replyKey(req), immutable: want != "", etag: etag,
			contentType: resp.Header.Get("Content-Type"), digest: resp.Header.Get("Docker-Content-Digest")}}
}

func (b *keepingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if !b.over {
		if b.buf.Len()+n > replyCacheEntryBytes {
			b.over, b.buf = true, bytes.Buffer{}
		} else {
			b.buf.Write(p[:n])
		}
	}
	if err == io.EOF && !b.over {
		b.over = true // keep once
		body := bytes.Clone(b.buf.Bytes())
		if b.want != "" {
			sum := sha256.Sum256(body)
			if hex.EncodeToString(sum[:]) != b.want {
				return n, err
			}
		}
		b.k.body = body
		b.cache.put(b.k)
	}
	return n, err
}
