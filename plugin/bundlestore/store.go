// Package bundlestore is the node's local store of signature material:
// what `sealgate bundle export` writes on a connected machine and `sealgate
// bundle import` (or a cosign layout) loads on a node that cannot reach, or
// must not depend on, a registry. A Store is a source.Source, asked before
// the registry; what it holds grants nothing by itself and is verified like
// registry material. Export, in archive.go, writes the portable file.
package bundlestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/ocimaterial"
	"github.com/sealgate/sealgate/plugin/source"
)

// DefaultDir is where a node keeps its local bundle store: the
// signature material that `sealgate bundle import` loads on nodes that
// cannot reach (or must not depend on) a registry.
const DefaultDir = "/var/lib/sealgate/bundles"

// DefaultArchiveBytes bounds an export file or a cosign layout import: what
// one import may make sealgate read and hold in memory. A real export is a
// few KiB per image; the bound is there for a file someone else made.
const DefaultArchiveBytes int64 = 256 << 20

// localIndexMediaType names version 1 of the per-image index file of the
// local store. Another value is refused, never guessed at.
const localIndexMediaType = "application/vnd.sealgate.local.image.v1+json"

// Store is a signature source backed by a directory on the node: the local
// bundle store that air-gapped nodes are loaded with (`sealgate bundle
// import`). It holds, per image digest, cosign's classic signature and
// attestation layers and Sigstore bundles exactly as a registry served them,
// and the image's manifest so that Describe works offline.
//
// The store is content-addressed:
//
//	<dir>/<alg>/<hex>/index.json              what is held for image <alg>:<hex>
//	<dir>/<alg>/<hex>/blobs/<alg>/<hex>       payloads, envelopes, bundles, the manifest
//
// Anyone who can write the directory can put anything there, so nothing in
// it is trusted: the index is parsed strictly and bounded by Limits, every
// blob is checked against the digest and size the index gives, and the
// material is verified by package verify exactly like what a registry
// serves. Importing or editing the store grants nothing by itself; it can
// only make an image fail (as anyone with write access to the disk could).
//
// Files are written atomically (write, fsync, rename; the index last), so a
// reader sees the old entry or the new one, never half of one. Store never
// returns ErrUnreachable: the disk is always "reachable", and an image the
// store does not hold has no material here (an empty slice, a nil error).
type Store struct {
	dir          string
	limits       ocimaterial.Limits
	archiveBytes int64
}

var (
	_ source.Source         = (*Store)(nil)
	_ source.ManifestSource = (*Store)(nil)
	_ source.Holder         = (*Store)(nil)
)

// Option configures a Store store.
type Option func(*Store) error

// WithLimits bounds what the store's files can make sealgate read: the
// same Limits as a registry (index files count as manifests). A zero field
// takes its default; a negative one is an error.
func WithLimits(l ocimaterial.Limits) Option {
	return func(s *Store) error {
		l, err := l.WithDefaults()
		if err != nil {
			return err
		}
		s.limits = l
		return nil
	}
}

// WithArchiveBytes bounds one import (an export file, or what is read of a
// cosign layout). Default DefaultArchiveBytes.
func WithArchiveBytes(n int64) Option {
	return func(s *Store) error {
		if n <= 0 {
			return fmt.Errorf("archive bytes must be positive, got %d", n)
		}
		s.archiveBytes = n
		return nil
	}
}

// New returns the store in dir. The directory need not exist: a store
// that does not exist holds nothing, and the first import creates it.
func New(dir string, opts ...Option) (*Store, error) {
	if dir == "" {
		return nil, errors.New("local bundle store: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local bundle store: %w", err)
	}
	s := &Store{dir: abs, archiveBytes: DefaultArchiveBytes}
	s.limits, _ = ocimaterial.Limits{}.WithDefaults()
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("local bundle store: nil option")
		}
		if err := o(s); err != nil {
			return nil, fmt.Errorf("local bundle store: %w", err)
		}
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Signatures returns the classic signatures the store holds for image, in
// the order they were imported. None is an empty slice and a nil error.
func (s *Store) Signatures(ctx context.Context, image name.Digest) ([]artifact.Signature, error) {
	out := []artifact.Signature{}
	err := s.read(ctx, image, func(r *os.Root, h v1.Hash, idx localIndex) error {
		for i, l := range idx.signatures {
			blob, err := s.readBlob(r, h, l, s.limits.PayloadBytes)
			if err != nil {
				return fmt.Errorf("signature %d: %w", i, err)
			}
			out = append(out, ocimaterial.NewSignature(l, blob, h.String(), s.origin(h, "signature", i)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("local signatures for %s: %w", image, err)
	}
	return out, nil
}

// Attestations returns the classic attestations (DSSE envelopes) the store
// holds for image. None is an empty slice and a nil error.
func (s *Store) Attestations(ctx context.Context, image name.Digest) ([]artifact.Attestation, error) {
	out := []artifact.Attestation{}
	err := s.read(ctx, image, func(r *os.Root, h v1.Hash, idx localIndex) error {
		for i, l := range idx.attestations {
			blob, err := s.readBlob(r, h, l, s.limits.EnvelopeBytes)
			if err != nil {
				return fmt.Errorf("attestation %d: %w", i, err)
			}
			out = append(out, ocimaterial.NewAttestation(l, blob, h.String(), s.origin(h, "attestation", i)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("local attestations for %s: %w", image, err)
	}
	return out, nil
}

// Bundles returns the Sigstore bundles the store holds for image. None is
// an empty slice and a nil error.
func (s *Store) Bundles(ctx context.Context, image name.Digest) ([]artifact.Bundle, error) {
	out := []artifact.Bundle{}
	err := s.read(ctx, image, func(r *os.Root, h v1.Hash, idx localIndex) error {
		for i, b := range idx.bundles {
			blob, err := s.readBlob(r, h, b.Layer, s.limits.BundleBytes)
			if err != nil {
				return fmt.Errorf("bundle %d: %w", i, err)
			}
			out = append(out, artifact.Bundle{
				JSON:         blob,
				MediaType:    b.MediaType,
				ArtifactType: b.artifactType,
				Attached:     h.String(),
				Origin:       s.origin(h, "bundle", i),
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("local bundles for %s: %w", image, err)
	}
	return out, nil
}

// Describe reads the manifest stored with image's material. An image the
// store holds no manifest for is an error wrapping source.ErrNotFound.
func (s *Store) Describe(ctx context.Context, image name.Digest) (artifact.Manifest, error) {
	mt, body, err := s.Manifest(ctx, image)
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("describe: %w", err)
	}
	h, _ := v1.NewHash(image.DigestStr()) // checked by Manifest
	m, err := ocimaterial.ParseDescription(h, mt, body)
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("describe %s: local bundle store %s: %w", image, s.dir, err)
	}
	return m, nil
}

// Manifest returns the manifest or index stored for image, checked against
// its digest. An image the store holds no manifest for is an error wrapping
// source.ErrNotFound.
func (s *Store) Manifest(ctx context.Context, image name.Digest) (string, []byte, error) {
	var (
		mt   string
		body []byte
	)
	found := false
	err := s.read(ctx, image, func(r *os.Root, h v1.Hash, idx localIndex) error {
		if idx.manifest == nil {
			return nil
		}
		b, err := s.readBlob(r, h, *idx.manifest, s.limits.ManifestBytes)
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		mt, body, found = idx.manifest.MediaType, b, true
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("local manifest of %s: %w", image, err)
	}
	if !found {
		return "", nil, fmt.Errorf("local bundle store %s holds no manifest of %s: %w", s.dir, image, source.ErrNotFound)
	}
	return mt, body, nil
}

// Holds reports whether the store has an entry for image: an import named
// it, whatever material (possibly none, possibly only its manifest) came
// with it. The store then answers for the image: an export records what the
// registry held, "none" included. Multi uses it to tell "the store knows
// this image and has no bundles for it" from "the store knows nothing of
// it", which an empty slice alone cannot say.
func (s *Store) Holds(ctx context.Context, image name.Digest) (bool, error) {
	holds := false
	err := s.read(ctx, image, func(*os.Root, v1.Hash, localIndex) error {
		holds = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("local entry of %s: %w", image, err)
	}
	return holds, nil
}

// read opens the store and image's index and calls fn with them. A store or
// an index that does not exist is not an error: fn is not called.
func (s *Store) read(ctx context.Context, image name.Digest, fn func(*os.Root, v1.Hash, localIndex) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h, err := localHash(image.DigestStr())
	if err != nil {
		return err
	}
	r, err := os.OpenRoot(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("local bundle store: %w", err)
	}
	defer r.Close()
	body, err := readFileBounded(r, indexPath(h), s.limits.ManifestBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("local bundle store %s: %w", s.dir, err)
	}
	idx, err := parseLocalIndex(body, h, s.limits)
	if err != nil {
		return fmt.Errorf("local bundle store %s: %s: %w", s.dir, indexPath(h), err)
	}
	if err := fn(r, h, idx); err != nil {
		return fmt.Errorf("local bundle store %s: %w", s.dir, err)
	}
	return nil
}

// readBlob reads one blob of image's entry, bounded by limit and by the
// descriptor's size, and checks it against the descriptor. A blob the index
// names but the store lacks is an error, not "none": the entry is damaged.
func (s *Store) readBlob(r *os.Root, image v1.Hash, l ocimaterial.Layer, limit int64) ([]byte, error) {
	if l.Size > limit {
		return nil, fmt.Errorf("blob %s: size %d, limit %d: %w", l.Digest, l.Size, limit, source.ErrLimit)
	}
	b, err := readFileBounded(r, blobPath(image, l.Digest), l.Size)
	if err != nil {
		return nil, err
	}
	if err := ocimaterial.CheckBlob(l.Digest, l.Size, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (s *Store) origin(image v1.Hash, kind string, i int) string {
	return fmt.Sprintf("local bundle store %s: %s %d of %s", s.dir, kind, i, image)
}

// localHash parses an image digest for use as a store path: only the
// algorithms go-containerregistry can check, with exact-length lowercase
// hex, so the path has no separator or dot in it.
func localHash(s string) (v1.Hash, error) {
	h, err := v1.NewHash(s)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image digest: %w", err)
	}
	if _, err := v1.Hasher(h.Algorithm); err != nil {
		return v1.Hash{}, fmt.Errorf("image digest: %w", err)
	}
	return h, nil
}

func entryDir(image v1.Hash) string { return path.Join(image.Algorithm, image.Hex) }

func indexPath(image v1.Hash) string { return path.Join(entryDir(image), "index.json") }

func blobPath(image, blob v1.Hash) string {
	return path.Join(entryDir(image), "blobs", blob.Algorithm, blob.Hex)
}

// readFileBounded reads a regular file under r, refusing one larger than
// limit (source.ErrLimit) and anything but a regular file (a FIFO would block, a
// device would never end).
func readFileBounded(r *os.Root, name string, limit int64) ([]byte, error) {
	f, err := r.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s has %d bytes, limit %d: %w", name, fi.Size(), limit, source.ErrLimit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s grew past %d bytes: %w", name, limit, source.ErrLimit)
	}
	return b, nil
}

// localIndex is what the store holds for one image, as descriptors.
type localIndex struct {
	image        v1.Hash
	manifest     *ocimaterial.Layer // Digest is the image digest
	signatures   []ocimaterial.Layer
	attestations []ocimaterial.Layer
	bundles      []bundleDescriptor
}

// bundleDescriptor is the layer that holds a Sigstore bundle and the
// artifact type of the manifest that held it.
type bundleDescriptor struct {
	ocimaterial.Layer
	artifactType string
}

func (idx localIndex) empty() bool {
	return idx.manifest == nil && len(idx.signatures) == 0 && len(idx.attestations) == 0 && len(idx.bundles) == 0
}

// check applies lim to an index that was built rather than parsed (an
// import, a merge), so that the store never holds what it would refuse to
// read.
func (idx localIndex) check(lim ocimaterial.Limits) error {
	body, err := idx.marshal()
	if err != nil {
		return err
	}
	if int64(len(body)) > lim.ManifestBytes {
		return fmt.Errorf("index of %s would have %d bytes, limit %d: %w", idx.image, len(body), lim.ManifestBytes, source.ErrLimit)
	}
	_, err = parseLocalIndex(body, idx.image, lim)
	return err
}

// Wire form of the index. Field order is fixed by the struct, so the same
// content always makes the same file.
type indexFile struct {
	MediaType    string           `json:"mediaType"`
	Image        string           `json:"image"`
	Manifest     *descriptorFile  `json:"manifest,omitempty"`
	Signatures   []descriptorFile `json:"signatures"`
	Attestations []descriptorFile `json:"attestations"`
	Bundles      []descriptorFile `json:"bundles"`
}

type descriptorFile struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func descriptorOf(l ocimaterial.Layer) descriptorFile {
	return descriptorFile{MediaType: l.MediaType, Digest: l.Digest.String(), Size: l.Size, Annotations: l.Annotations}
}

func (idx localIndex) marshal() ([]byte, error) {
	f := indexFile{
		MediaType:    localIndexMediaType,
		Image:        idx.image.String(),
		Signatures:   []descriptorFile{},
		Attestations: []descriptorFile{},
		Bundles:      []descriptorFile{},
	}
	if idx.manifest != nil {
		d := descriptorOf(*idx.manifest)
		f.Manifest = &d
	}
	for _, l := range idx.signatures {
		f.Signatures = append(f.Signatures, descriptorOf(l))
	}
	for _, l := range idx.attestations {
		f.Attestations = append(f.Attestations, descriptorOf(l))
	}
	for _, b := range idx.bundles {
		d := descriptorOf(b.Layer)
		d.ArtifactType = b.artifactType
		f.Bundles = append(f.Bundles, d)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// parseLocalIndex reads an index file of the store strictly: exact-case
// keys and no others, no duplicate keys, the version this code writes, the
// image digest the file's path names, media types of the kind each list
// holds, and the counts and sizes of lim. The file is on a disk an attacker
// may write, so it is read as a registry reply is: nothing it says is
// believed beyond what the blobs' digests then prove.
func parseLocalIndex(body []byte, image v1.Hash, lim ocimaterial.Limits) (localIndex, error) {
	if err := ocimaterial.CheckJSON(body); err != nil {
		return localIndex{}, err
	}
	o, err := ocimaterial.DecodeObject(body)
	if err != nil {
		return localIndex{}, err
	}
	if err := onlyKeys(o, "mediaType", "image", "manifest", "signatures", "attestations", "bundles"); err != nil {
		return localIndex{}, err
	}
	mt, err := requireString(o, "mediaType")
	if err != nil {
		return localIndex{}, err
	}
	if mt != localIndexMediaType {
		return localIndex{}, fmt.Errorf("mediaType %q: this sealgate reads %q", mt, localIndexMediaType)
	}
	img, err := requireString(o, "image")
	if err != nil {
		return localIndex{}, err
	}
	if img != image.String() {
		return localIndex{}, fmt.Errorf("image %q, but the file is the entry of %s", img, image)
	}
	idx := localIndex{image: image}
	if o.Has("manifest") {
		raw := o["manifest"]
		if err := onlyKeysRaw(raw, "mediaType", "digest", "size"); err != nil {
			return localIndex{}, fmt.Errorf("manifest: %w", err)
		}
		l, err := ocimaterial.ParseLayer(raw, lim.ManifestBytes)
		if err != nil {
			return localIndex{}, fmt.Errorf("manifest: %w", err)
		}
		switch l.MediaType {
		case ocimaterial.MediaTypeOCIManifest, ocimaterial.MediaTypeOCIIndex, ocimaterial.MediaTypeDockerManifest, ocimaterial.MediaTypeDockerList:
		default:
			return localIndex{}, fmt.Errorf("manifest: media type %q is not an image manifest or index", l.MediaType)
		}
		if l.Digest != image {
			return localIndex{}, fmt.Errorf("manifest: digest %s is not the image's", l.Digest)
		}
		idx.manifest = &l
	}
	list := func(key string, max int, maxBytes int64, mediaType string) ([]ocimaterial.Layer, error) {
		raw, err := requireArray(o, key)
		if err != nil {
			return nil, err
		}
		if len(raw) > max {
			return nil, fmt.Errorf("%d %s, limit %d: %w", len(raw), key, max, source.ErrLimit)
		}
		out := make([]ocimaterial.Layer, 0, len(raw))
		for i, r := range raw {
			if err := onlyKeysRaw(r, "mediaType", "digest", "size", "annotations"); err != nil {
				return nil, fmt.Errorf("%s %d: %w", key, i, err)
			}
			l, err := ocimaterial.ParseLayer(r, maxBytes)
			if err != nil {
				return nil, fmt.Errorf("%s %d: %w", key, i, err)
			}
			if l.MediaType != mediaType {
				return nil, fmt.Errorf("%s %d: media type %q, want %q", key, i, l.MediaType, mediaType)
			}
			out = append(out, l)
		}
		return out, nil
	}
	if idx.signatures, err = list("signatures", lim.Signatures, lim.PayloadBytes, ocimaterial.SimpleSigningMediaType); err != nil {
		return localIndex{}, err
	}
	if idx.attestations, err = list("attestations", lim.Signatures, lim.EnvelopeBytes, ocimaterial.DSSEMediaType); err != nil {
		return localIndex{}, err
	}
	raw, err := requireArray(o, "bundles")
	if err != nil {
		return localIndex{}, err
	}
	if len(raw) > lim.Referrers {
		return localIndex{}, fmt.Errorf("%d bundles, limit %d: %w", len(raw), lim.Referrers, source.ErrLimit)
	}
	for i, r := range raw {
		if err := onlyKeysRaw(r, "mediaType", "artifactType", "digest", "size"); err != nil {
			return localIndex{}, fmt.Errorf("bundles %d: %w", i, err)
		}
		l, err := ocimaterial.ParseLayer(r, lim.BundleBytes)
		if err != nil {
			return localIndex{}, fmt.Errorf("bundles %d: %w", i, err)
		}
		d, _ := ocimaterial.DecodeObject(r)
		at, err := d.Str("artifactType")
		if err != nil {
			return localIndex{}, fmt.Errorf("bundles %d: %w", i, err)
		}
		if !ocimaterial.IsBundleMediaType(l.MediaType) || !ocimaterial.IsBundleMediaType(at) {
			return localIndex{}, fmt.Errorf("bundles %d: media type %q, artifact type %q: not a Sigstore bundle", i, l.MediaType, at)
		}
		idx.bundles = append(idx.bundles, bundleDescriptor{Layer: l, artifactType: at})
	}
	return idx, nil
}

// onlyKeys rejects keys outside allowed: a field this version does not know
// may mean something it would ignore.
func onlyKeys(o ocimaterial.Object, allowed ...string) error {
	for k := range o {
		if !slices.Contains(allowed, k) {
			return fmt.Errorf("unknown key %q", k)
		}
	}
	return nil
}

func onlyKeysRaw(raw json.RawMessage, allowed ...string) error {
	o, err := ocimaterial.DecodeObject(raw)
	if err != nil {
		return err
	}
	return onlyKeys(o, allowed...)
}

func requireString(o ocimaterial.Object, key string) (string, error) {
	if !o.Has(key) {
		return "", fmt.Errorf("%s missing", key)
	}
	return o.Str(key)
}

func requireArray(o ocimaterial.Object, key string) ([]json.RawMessage, error) {
	if !o.Has(key) {
		return nil, fmt.Errorf("%s missing", key)
	}
	raw := bytes.TrimSpace(o[key])
	if len(raw) == 0 || raw[0] != '[' {
		return nil, fmt.Errorf("%s: not a JSON array", key)
	}
	return o.Array(key)
}

// imageEntry is what one import brings for one image: its index and the
// blobs the index names, each already checked against its digest.
type imageEntry struct {
	ref   string // for reports: repository@digest when known, else the digest
	index localIndex
	blobs map[v1.Hash][]byte
}

// ImageSummary says what an export or import carried for one image.
type ImageSummary struct {
	// Ref is the image as "repository@digest", or the digest alone when the
	// source named no repository.
	Ref          string
	Digest       string
	Manifest     bool
	Signatures   int
	Attestations int
	Bundles      int
}

func (e imageEntry) summary() ImageSummary {
	return summaryOf(e.ref, e.index)
}

func summaryOf(ref string, idx localIndex) ImageSummary {
	if ref == "" {
		ref = idx.image.String()
	}
	return ImageSummary{
		Ref:          ref,
		Digest:       idx.image.String(),
		Manifest:     idx.manifest != nil,
		Signatures:   len(idx.signatures),
		Attestations: len(idx.attestations),
		Bundles:      len(idx.bundles),
	}
}

// put writes entries into the store, merging each with what the store
// already holds for that image (the union, without duplicates), under an
// exclusive lock so that two imports do not lose each other's material.
// Blobs are written before the index that names them, each atomically.
// It returns what the store holds afterwards for each image.
func (s *Store) put(entries []imageEntry) ([]ImageSummary, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("local bundle store: %w", err)
	}
	r, err := os.OpenRoot(s.dir)
	if err != nil {
		return nil, fmt.Errorf("local bundle store: %w", err)
	}
	defer r.Close()
	unlock, err := lockStore(r)
	if err != nil {
		return nil, fmt.Errorf("local bundle store %s: %w", s.dir, err)
	}
	defer unlock()

	var out []ImageSummary
	for _, e := range entries {
		merged := e.index
		old, err := readFileBounded(r, indexPath(e.index.image), s.limits.ManifestBytes)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return out, fmt.Errorf("local bundle store %s: %w", s.dir, err)
		default:
			prev, err := parseLocalIndex(old, e.index.image, s.limits)
			if err != nil {
				return out, fmt.Errorf("local bundle store %s: the entry of %s is damaged (%w); remove %s and import again",
					s.dir, e.index.image, err, filepath.Join(s.dir, filepath.FromSlash(entryDir(e.index.image))))
			}
			merged = mergeIndex(prev, e.index)
		}
		if err := merged.check(s.limits); err != nil {
			return out, fmt.Errorf("import %s: with what the store already holds: %w", e.ref, err)
		}
		digests := make([]v1.Hash, 0, len(e.blobs))
		for h := range e.blobs {
			digests = append(digests, h)
		}
		slices.SortFunc(digests, func(a, b v1.Hash) int { return compareStrings(a.String(), b.String()) })
		for _, h := range digests {
			if err := writeFileAtomic(r, blobPath(e.index.image, h), e.blobs[h]); err != nil {
				return out, fmt.Errorf("local bundle store %s: %w", s.dir, err)
			}
		}
		body, err := merged.marshal()
		if err != nil {
			return out, err
		}
		if err := writeFileAtomic(r, indexPath(e.index.image), body); err != nil {
			return out, fmt.Errorf("local bundle store %s: %w", s.dir, err)
		}
		out = append(out, summaryOf(e.ref, merged))
	}
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// mergeIndex is the union of two indexes of one image: what a holds, then
// what b adds. A layer counts as the same when its digest and annotations
// are (cosign appends to a signature manifest, so a later import repeats
// the earlier layers).
func mergeIndex(a, b localIndex) localIndex {
	out := localIndex{image: a.image, manifest: a.manifest}
	if out.manifest == nil {
		out.manifest = b.manifest
	}
	out.signatures = mergeLayers(a.signatures, b.signatures)
	out.attestations = mergeLayers(a.attestations, b.attestations)
	seen := map[string]bool{}
	for _, d := range append(slices.Clone(a.bundles), b.bundles...) {
		k := d.Digest.String() + " " + d.MediaType + " " + d.artifactType
		if !seen[k] {
			seen[k] = true
			out.bundles = append(out.bundles, d)
		}
	}
	return out
}

func mergeLayers(a, b []ocimaterial.Layer) []ocimaterial.Layer {
	seen := map[string]bool{}
	var out []ocimaterial.Layer
	for _, l := range append(slices.Clone(a), b...) {
		var ann []byte
		if len(l.Annotations) > 0 {
			ann, _ = json.Marshal(l.Annotations) // map keys are sorted
		}
		k := l.Digest.String() + " " + l.MediaType + " " + string(ann)
		if !seen[k] {
			seen[k] = true
			out = append(out, l)
		}
	}
	return out
}

// writeFileAtomic writes data to name under r so that name holds either its
// old content or all of data, even after a crash: a temporary file in the
// same directory, fsync, rename, fsync of the directory.
func writeFileAtomic(r *os.Root, name string, data []byte) error {
	dir := path.Dir(name)
	if err := r.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := path.Join(dir, ".tmp-"+path.Base(name)+"-"+hex.EncodeToString(rnd[:]))
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(tmp, name)
	}
	if err != nil {
		_ = r.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	d, err := r.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// lockStore takes the store's exclusive lock (flock on <dir>/.lock).
func lockStore(r *os.Root) (func(), error) {
	f, err := r.OpenFile(".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
