package bundlestore

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/artifact"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
	"github.com/sealgate/sealgate/plugin/source"
)

// ExportMediaType names version 1 of the export file format: a tar whose
// first member, "sealgate-bundle.json", is
//
//	{"mediaType": ExportMediaType, "images": ["repository@digest", ...]}
//
// followed, for each image, by the members the local store keeps for it
// ("<alg>/<hex>/blobs/<alg>/<hex>" and "<alg>/<hex>/index.json"). A file of
// another version is refused with a message that says so.
const ExportMediaType = "application/vnd.sealgate.bundle.v1+json"

// exportHeaderName is the first member of an export file.
const exportHeaderName = "sealgate-bundle.json"

// maxExportChildren bounds the platform manifests of one index whose
// material is exported beside it.
const maxExportChildren = 64

// ExportOption configures Export.
type ExportOption func(*exportOptions) error

type exportOptions struct {
	limits     ocimaterial.Limits
	allowEmpty bool
}

// ErrNoMaterial: an image given to Export has no signatures, attestations
// or bundles, so the export would carry nothing for it.
var ErrNoMaterial = errors.New("no signature material")

// WithAllowEmpty lets Export include images that have no material (their
// manifests only), instead of failing with ErrNoMaterial.
func WithAllowEmpty() ExportOption {
	return func(o *exportOptions) error {
		o.allowEmpty = true
		return nil
	}
}

// WithExportLimits makes Export refuse material that a store with these
// limits would refuse to import, rather than writing a file the node cannot
// load. Default: the default Limits.
func WithExportLimits(l ocimaterial.Limits) ExportOption {
	return func(o *exportOptions) error {
		l, err := l.WithDefaults()
		if err != nil {
			return err
		}
		o.limits = l
		return nil
	}
}

// Export fetches from src, for each image, its classic signatures and
// attestations, its Sigstore bundles and (when src is a source.ManifestSource) its
// manifest, and writes them to w as one export file (see ExportMediaType)
// for `sealgate bundle import` on a node that cannot reach the registry.
// For an index, the material of its platform manifests is exported too
// (those that have any), so that a rule accepting platform signatures
// decides offline as it would online.
//
// Every failure to fetch is an error: an export that silently lacks
// material would only be found out on the node. Nothing is verified here;
// the node verifies what it imports like anything else.
func Export(ctx context.Context, src source.Source, images []name.Digest, w io.Writer, opts ...ExportOption) ([]ImageSummary, error) {
	o := exportOptions{}
	o.limits, _ = ocimaterial.Limits{}.WithDefaults()
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("export: nil option")
		}
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	if src == nil {
		return nil, errors.New("export: nil source")
	}
	if len(images) == 0 {
		return nil, errors.New("export: no images")
	}
	// One entry per digest, as the store keeps them: the material of every
	// repository that holds the digest is merged into it, so that each of
	// them decides offline.
	var (
		entries []imageEntry
		at      = map[v1.Hash]int{}
		sums    []ImageSummary
	)
	add := func(image name.Digest, child bool) (imageEntry, error) {
		e, err := exportEntry(ctx, src, image, o.limits)
		if err != nil {
			return imageEntry{}, fmt.Errorf("export %s: %w", image, err)
		}
		if child && !hasMaterial(e.index) {
			return e, nil
		}
		sums = append(sums, e.summary())
		if i, ok := at[e.index.image]; ok {
			entries[i].index = mergeIndex(entries[i].index, e.index)
			for h, b := range e.blobs {
				entries[i].blobs[h] = b
			}
			return e, nil
		}
		at[e.index.image] = len(entries)
		entries = append(entries, e)
		return e, nil
	}
	for _, image := range images {
		e, err := add(image, false)
		if err != nil {
			return nil, err
		}
		before := len(sums)
		empty := func() error {
			if hasMaterial(e.index) || len(sums) > before || o.allowEmpty {
				return nil
			}
			return fmt.Errorf("export %s: %w: no signatures, attestations or bundles, for it or its platform manifests; a node that imports this file could not allow it (--allow-empty exports it anyway)", image, ErrNoMaterial)
		}
		if e.index.manifest == nil {
			if err := empty(); err != nil {
				return nil, err
			}
			continue
		}
		m, err := ocimaterial.ParseDescription(e.index.image, e.index.manifest.MediaType, e.blobs[e.index.image])
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", image, err)
		}
		if len(m.Children) > maxExportChildren {
			return nil, fmt.Errorf("export %s: index has %d manifests, limit %d: %w", image, len(m.Children), maxExportChildren, source.ErrLimit)
		}
		for _, c := range m.Children {
			if _, err := add(image.Context().Digest(c.Digest), true); err != nil {
				return nil, err
			}
		}
		if err := empty(); err != nil {
			return nil, err
		}
	}
	for _, e := range entries {
		if err := e.index.check(o.limits); err != nil {
			return nil, fmt.Errorf("export %s: the material of every repository together: %w", e.ref, err)
		}
	}
	if err := writeArchive(w, entries); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return sums, nil
}

func hasMaterial(idx localIndex) bool {
	return len(idx.signatures) > 0 || len(idx.attestations) > 0 || len(idx.bundles) > 0
}

// exportEntry fetches what src has for one image and lays it out as the
// store keeps it.
func exportEntry(ctx context.Context, src source.Source, image name.Digest, lim ocimaterial.Limits) (imageEntry, error) {
	h, err := localHash(image.DigestStr())
	if err != nil {
		return imageEntry{}, err
	}
	e := imageEntry{ref: image.String(), index: localIndex{image: h}, blobs: map[v1.Hash][]byte{}}
	if ms, ok := src.(source.ManifestSource); ok {
		mt, body, err := ms.Manifest(ctx, image)
		if err != nil {
			return imageEntry{}, fmt.Errorf("manifest: %w", err)
		}
		if _, err := ocimaterial.ParseDescription(h, mt, body); err != nil {
			return imageEntry{}, fmt.Errorf("manifest: %w", err)
		}
		e.index.manifest = &ocimaterial.Layer{Digest: h, Size: int64(len(body)), MediaType: mt}
		e.blobs[h] = body
	}
	sigs, err := src.Signatures(ctx, image)
	if err != nil {
		return imageEntry{}, err
	}
	atts, err := src.Attestations(ctx, image)
	if err != nil {
		return imageEntry{}, err
	}
	bundles, err := src.Bundles(ctx, image)
	if err != nil {
		return imageEntry{}, err
	}
	for _, s := range sigs {
		e.index.signatures = append(e.index.signatures, e.addBlob(ocimaterial.SimpleSigningMediaType, s.Payload, signatureAnnotations(s)))
	}
	for _, a := range atts {
		e.index.attestations = append(e.index.attestations, e.addBlob(ocimaterial.DSSEMediaType, a.Envelope, attestationAnnotations(a)))
	}
	for _, b := range bundles {
		l := e.addBlob(b.MediaType, b.JSON, nil)
		e.index.bundles = append(e.index.bundles, bundleDescriptor{Layer: l, artifactType: b.ArtifactType})
	}
	// A referrers listing has no meaningful order (registries list by
	// digest, or in no order at all): store bundles by digest, so that the
	// same material always makes the same file.
	slices.SortStableFunc(e.index.bundles, func(a, b bundleDescriptor) int {
		return compareStrings(a.Digest.String(), b.Digest.String())
	})
	e.index = mergeIndex(localIndex{image: h}, e.index) // drops duplicates
	if err := e.index.check(lim); err != nil {
		return imageEntry{}, err
	}
	return e, nil
}

func (e *imageEntry) addBlob(mediaType string, blob []byte, ann map[string]string) ocimaterial.Layer {
	sum := sha256.Sum256(blob)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	e.blobs[h] = blob
	return ocimaterial.Layer{Digest: h, Size: int64(len(blob)), MediaType: mediaType, Annotations: ann}
}

// signatureAnnotations rebuilds the annotations of cosign's signature
// layer from what a source found, so that the store yields the same
// Signature: the signature in base64 and each present field as is.
func signatureAnnotations(s artifact.Signature) map[string]string {
	ann := map[string]string{}
	if len(s.Signature) > 0 {
		ann[ocimaterial.AnnotationSignature] = base64.StdEncoding.EncodeToString(s.Signature)
	}
	setAnnotations(ann, s.Certificate, s.Chain, s.RekorBundle, s.Timestamp)
	return ann
}

func attestationAnnotations(a artifact.Attestation) map[string]string {
	ann := map[string]string{}
	setAnnotations(ann, a.Certificate, a.Chain, a.RekorBundle, a.Timestamp)
	return ann
}

func setAnnotations(ann map[string]string, cert, chain, rekor, ts []byte) {
	for k, v := range map[string][]byte{ocimaterial.AnnotationCertificate: cert, ocimaterial.AnnotationChain: chain, ocimaterial.AnnotationBundle: rekor, ocimaterial.AnnotationTimestamp: ts} {
		if len(v) > 0 {
			ann[k] = string(v)
		}
	}
}

// writeArchive writes entries as an export file. The output depends only
// on the entries: members in a fixed order, fixed times and modes.
func writeArchive(w io.Writer, entries []imageEntry) error {
	tw := tar.NewWriter(w)
	write := func(name string, body []byte) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	hdr := exportHeader{MediaType: ExportMediaType, Images: []string{}}
	for _, e := range entries {
		hdr.Images = append(hdr.Images, e.ref)
	}
	body, err := json.MarshalIndent(hdr, "", "  ")
	if err != nil {
		return err
	}
	if err := write(exportHeaderName, append(body, '\n')); err != nil {
		return err
	}
	for _, e := range entries {
		digests := make([]v1.Hash, 0, len(e.blobs))
		for h := range e.blobs {
			digests = append(digests, h)
		}
		slices.SortFunc(digests, func(a, b v1.Hash) int { return compareStrings(a.String(), b.String()) })
		for _, h := range digests {
			if err := write(blobPath(e.index.image, h), e.blobs[h]); err != nil {
				return err
			}
		}
		idx, err := e.index.marshal()
		if err != nil {
			return err
		}
		if err := write(indexPath(e.index.image), idx); err != nil {
			return err
		}
	}
	return tw.Close()
}

type exportHeader struct {
	MediaType string   `json:"mediaType"`
	Images    []string `json:"images"`
}

// Import loads path into the store: an export file (`sealgate bundle
// export`), or a directory holding an OCI image layout as `cosign save
// --dir` writes it. It returns what the store holds afterwards for each
// imported image. Nothing is verified: imported material grants nothing by
// itself, and is verified like any other when an image is decided.
func (s *Store) Import(p string) ([]ImageSummary, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if fi.IsDir() {
		return s.ImportLayout(p)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("import %s: not a regular file or a directory", p)
	}
	out, err := s.ImportArchive(f)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", p, err)
	}
	return out, nil
}

// ImportArchive loads an export file into the store. The whole file is
// checked before anything is written: a damaged or foreign file changes
// nothing.
func (s *Store) ImportArchive(r io.Reader) ([]ImageSummary, error) {
	entries, err := parseArchive(r, s.limits, s.archiveBytes)
	if err != nil {
		return nil, err
	}
	return s.put(entries)
}

// boundedReader fails once more than max bytes have been read.
type boundedReader struct {
	r        io.Reader
	max, n   int64
	exceeded bool
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n > b.max {
		b.exceeded = true
		return 0, source.ErrLimit
	}
	if rest := b.max + 1 - b.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.max {
		b.exceeded = true
		return 0, source.ErrLimit
	}
	return n, err
}

// archiveMember is one member of an export file, by what its name says.
type archiveMember struct {
	image v1.Hash
	blob  v1.Hash // zero for the index
}

// parseArchiveName reads a member name of the store layout:
// "<alg>/<hex>/index.json" or "<alg>/<hex>/blobs/<alg>/<hex>". Any other
// name, or one that is not written exactly as the store writes it, is an
// error.
func parseArchiveName(n string) (archiveMember, error) {
	parts := strings.Split(n, "/")
	var m archiveMember
	var err error
	switch {
	case len(parts) == 3 && parts[2] == "index.json":
	case len(parts) == 5 && parts[2] == "blobs":
		if m.blob, err = localHash(parts[3] + ":" + parts[4]); err != nil {
			return archiveMember{}, err
		}
	default:
		return archiveMember{}, errors.New("not a member of an export")
	}
	if m.image, err = localHash(parts[0] + ":" + parts[1]); err != nil {
		return archiveMember{}, err
	}
	return m, nil
}

// parseArchive reads and checks an export file: the version header first,
// members of the store layout only (regular files, each once, each within
// its limit), every blob matching the digest its name gives, every index
// parsed strictly for the image its path names, every blob an index names
// present and none that no index names, and exactly the images the header
// lists. At most maxBytes are read.
func parseArchive(r io.Reader, lim ocimaterial.Limits, maxBytes int64) ([]imageEntry, error) {
	br := &boundedReader{r: r, max: maxBytes}
	entries, err := readArchive(br, lim)
	if br.exceeded {
		return nil, fmt.Errorf("export file larger than %d bytes: %w", maxBytes, source.ErrLimit)
	}
	return entries, err
}

func readArchive(r io.Reader, lim ocimaterial.Limits) ([]imageEntry, error) {
	tr := tar.NewReader(r)
	maxBlob := max(lim.ManifestBytes, lim.PayloadBytes, lim.EnvelopeBytes, lim.BundleBytes)
	var (
		header  *exportHeader
		refs    = map[v1.Hash]string{}
		order   []v1.Hash
		indexes = map[v1.Hash][]byte{}
		blobs   = map[v1.Hash]map[v1.Hash][]byte{}
	)
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if header == nil {
				return nil, errors.New("not a sealgate export file: empty")
			}
			break
		}
		if err != nil {
			if header == nil {
				return nil, fmt.Errorf("not a sealgate export file (a tar whose first member is %s): %w", exportHeaderName, err)
			}
			return nil, fmt.Errorf("export file damaged: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA { //nolint:staticcheck // old tars write TypeRegA
			return nil, fmt.Errorf("member %q: not a regular file", hdr.Name)
		}
		if hdr.Size < 0 {
			return nil, fmt.Errorf("member %q: negative size", hdr.Name)
		}
		if i == 0 {
			if hdr.Name != exportHeaderName {
				return nil, fmt.Errorf("not a sealgate export file: first member is %q, want %s", hdr.Name, exportHeaderName)
			}
			body, err := readMember(tr, hdr, lim.ManifestBytes)
			if err != nil {
				return nil, err
			}
			h, err := parseExportHeader(body)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", exportHeaderName, err)
			}
			header = &h
			for _, ref := range h.Images {
				d, err := name.NewDigest(ref)
				if err != nil {
					return nil, fmt.Errorf("%s: image %q: %w", exportHeaderName, ref, err)
				}
				hh, err := localHash(d.DigestStr())
				if err != nil {
					return nil, fmt.Errorf("%s: image %q: %w", exportHeaderName, ref, err)
				}
				if _, dup := refs[hh]; dup {
					return nil, fmt.Errorf("%s: image %s listed twice", exportHeaderName, hh)
				}
				refs[hh] = d.String()
				order = append(order, hh)
			}
			continue
		}
		m, err := parseArchiveName(hdr.Name)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", hdr.Name, err)
		}
		if _, ok := refs[m.image]; !ok {
			return nil, fmt.Errorf("member %q: image %s is not listed in %s", hdr.Name, m.image, exportHeaderName)
		}
		if m.blob == (v1.Hash{}) {
			if _, dup := indexes[m.image]; dup {
				return nil, fmt.Errorf("member %q twice", hdr.Name)
			}
			if indexes[m.image], err = readMember(tr, hdr, lim.ManifestBytes); err != nil {
				return nil, err
			}
			continue
		}
		if blobs[m.image] == nil {
			blobs[m.image] = map[v1.Hash][]byte{}
		}
		if _, dup := blobs[m.image][m.blob]; dup {
			return nil, fmt.Errorf("member %q twice", hdr.Name)
		}
		body, err := readMember(tr, hdr, maxBlob)
		if err != nil {
			return nil, err
		}
		if err := ocimaterial.CheckDigest(m.blob, body); err != nil {
			return nil, fmt.Errorf("member %q: %w", hdr.Name, err)
		}
		blobs[m.image][m.blob] = body
	}

	entries := make([]imageEntry, 0, len(order))
	for _, h := range order {
		body, ok := indexes[h]
		if !ok {
			return nil, fmt.Errorf("image %s: no %s", refs[h], indexPath(h))
		}
		idx, err := parseLocalIndex(body, h, lim)
		if err != nil {
			return nil, fmt.Errorf("image %s: %s: %w", refs[h], indexPath(h), err)
		}
		e := imageEntry{ref: refs[h], index: idx, blobs: map[v1.Hash][]byte{}}
		have := blobs[h]
		for _, l := range indexLayers(idx) {
			b, ok := have[l.Digest]
			if !ok {
				return nil, fmt.Errorf("image %s: blob %s named by its index is missing", refs[h], l.Digest)
			}
			if err := ocimaterial.CheckBlob(l.Digest, l.Size, b); err != nil {
				return nil, fmt.Errorf("image %s: %w", refs[h], err)
			}
			e.blobs[l.Digest] = b
		}
		for d := range have {
			if _, ok := e.blobs[d]; !ok {
				return nil, fmt.Errorf("image %s: blob %s is named by no index", refs[h], d)
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// indexLayers lists every blob an index names.
func indexLayers(idx localIndex) []ocimaterial.Layer {
	var out []ocimaterial.Layer
	if idx.manifest != nil {
		out = append(out, *idx.manifest)
	}
	out = append(out, idx.signatures...)
	out = append(out, idx.attestations...)
	for _, b := range idx.bundles {
		out = append(out, b.Layer)
	}
	return out
}

func readMember(tr *tar.Reader, hdr *tar.Header, limit int64) ([]byte, error) {
	if hdr.Size > limit {
		return nil, fmt.Errorf("member %q has %d bytes, limit %d: %w", hdr.Name, hdr.Size, limit, source.ErrLimit)
	}
	b, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
	if err != nil {
		return nil, fmt.Errorf("export file damaged: member %q: %w", hdr.Name, err)
	}
	if int64(len(b)) != hdr.Size {
		return nil, fmt.Errorf("export file damaged: member %q truncated", hdr.Name)
	}
	return b, nil
}

// parseExportHeader reads the first member of an export file strictly.
func parseExportHeader(body []byte) (exportHeader, error) {
	if err := ocimaterial.CheckJSON(body); err != nil {
		return exportHeader{}, err
	}
	o, err := ocimaterial.DecodeObject(body)
	if err != nil {
		return exportHeader{}, err
	}
	mt, err := requireString(o, "mediaType")
	if err != nil {
		return exportHeader{}, err
	}
	if mt != ExportMediaType {
		if strings.HasPrefix(mt, "application/vnd.sealgate.bundle.") {
			return exportHeader{}, fmt.Errorf("export format %q is not the one this sealgate reads (%s); export again with the sealgate of the node", mt, ExportMediaType)
		}
		return exportHeader{}, fmt.Errorf("mediaType %q: not a sealgate export", mt)
	}
	if err := onlyKeys(o, "mediaType", "images"); err != nil {
		return exportHeader{}, err
	}
	raw, err := requireArray(o, "images")
	if err != nil {
		return exportHeader{}, err
	}
	h := exportHeader{MediaType: mt}
	for i, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			return exportHeader{}, fmt.Errorf("images %d: %w", i, err)
		}
		h.Images = append(h.Images, s)
	}
	return h, nil
}
