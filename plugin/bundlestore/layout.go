package bundlestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
	"github.com/sealgate/sealgate/plugin/source"
)

// Annotations cosign v2 (pkg/oci/layout) puts on the descriptors of the
// index.json of the OCI layout `cosign save --dir` writes: "kind" says what
// each manifest is.
const (
	layoutKindAnnotation = "kind"
	layoutKindImage      = "dev.cosignproject.cosign/image"
	layoutKindImageIndex = "dev.cosignproject.cosign/imageIndex"
	layoutKindSignatures = "dev.cosignproject.cosign/sigs"
	layoutKindAtts       = "dev.cosignproject.cosign/atts"
)

// layoutBytes bounds the small files of a layout (oci-layout).
const layoutBytes = 4 << 10

// ImportLayout loads the OCI image layout in dir, as `cosign save --dir DIR
// IMAGE` writes it (cosign v2, pkg/oci/layout): an index.json whose
// manifests are annotated "kind": the image or index itself
// (dev.cosignproject.cosign/image or .../imageIndex, exactly one), its
// signature manifest (.../sigs) and its attestation manifest (.../atts),
// which are cosign's .sig and .att manifests with their layers in blobs/.
// Manifests without a kind are read as possible Sigstore bundle referrers
// (an image manifest whose own artifact type is a bundle type and whose
// subject is the image), as other tools lay them out; anything else is
// skipped. The image's layers are never read.
//
// Everything is read under dir only (symbolic links cannot lead out of it),
// bounded by the store's Limits and by WithArchiveBytes overall, and
// checked against its digest. The image's material is stored under the
// digest of the manifest annotated as the image.
func (s *Store) ImportLayout(dir string) ([]ImageSummary, error) {
	e, err := s.readLayout(dir)
	if err != nil {
		return nil, fmt.Errorf("import cosign layout %s: %w", dir, err)
	}
	return s.put([]imageEntry{e})
}

type layoutReader struct {
	root   *os.Root
	lim    ocimaterial.Limits
	budget int64 // bytes that may still be read
}

func (lr *layoutReader) read(name string, limit int64) ([]byte, error) {
	b, err := readFileBounded(lr.root, name, min(limit, lr.budget))
	if errors.Is(err, source.ErrLimit) && limit > lr.budget {
		return nil, fmt.Errorf("layout larger than the import limit: %w", source.ErrLimit)
	}
	if err != nil {
		return nil, err
	}
	lr.budget -= int64(len(b))
	return b, nil
}

// blob reads blobs/<alg>/<hex> and checks it against d (and size, when
// size is not negative).
func (lr *layoutReader) blob(d v1.Hash, size, limit int64) ([]byte, error) {
	if _, err := localHash(d.String()); err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("blob %s: size %d, limit %d: %w", d, size, limit, source.ErrLimit)
	}
	b, err := lr.read(path.Join("blobs", d.Algorithm, d.Hex), limit)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if size >= 0 {
		err = ocimaterial.CheckBlob(d, size, b)
	} else {
		err = ocimaterial.CheckDigest(d, b)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// layoutDescriptor is one entry of a layout's index.json.
type layoutDescriptor struct {
	mediaType string
	digest    v1.Hash
	size      int64
	kind      string
}

func (s *Store) readLayout(dir string) (imageEntry, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return imageEntry{}, err
	}
	defer root.Close()
	lr := &layoutReader{root: root, lim: s.limits, budget: s.archiveBytes}

	ol, err := lr.read("oci-layout", layoutBytes)
	if err != nil {
		return imageEntry{}, fmt.Errorf("not an OCI image layout: %w", err)
	}
	if err := checkLayoutVersion(ol); err != nil {
		return imageEntry{}, fmt.Errorf("oci-layout: %w", err)
	}
	body, err := lr.read("index.json", s.limits.ManifestBytes)
	if err != nil {
		return imageEntry{}, err
	}
	descs, err := parseLayoutIndex(body, s.limits.Referrers+3)
	if err != nil {
		return imageEntry{}, fmt.Errorf("index.json: %w", err)
	}
	var subject, sigs, atts *layoutDescriptor
	var others []layoutDescriptor
	for i := range descs {
		d := &descs[i]
		var slot **layoutDescriptor
		switch d.kind {
		case layoutKindImage, layoutKindImageIndex:
			slot = &subject
		case layoutKindSignatures:
			slot = &sigs
		case layoutKindAtts:
			slot = &atts
		case "":
			others = append(others, *d)
			continue
		default:
			continue
		}
		if *slot != nil {
			return imageEntry{}, fmt.Errorf("index.json: two manifests of kind %s", d.kind)
		}
		*slot = d
	}
	if subject == nil {
		return imageEntry{}, fmt.Errorf("index.json: no manifest annotated %q: %q or %q; is this what `cosign save --dir` wrote?",
			layoutKindAnnotation, layoutKindImage, layoutKindImageIndex)
	}
	if _, err := localHash(subject.digest.String()); err != nil {
		return imageEntry{}, fmt.Errorf("image: %w", err)
	}
	image := subject.digest
	e := imageEntry{index: localIndex{image: image}, blobs: map[v1.Hash][]byte{}}

	mbody, err := lr.blob(image, subject.size, s.limits.ManifestBytes)
	if err != nil {
		return imageEntry{}, fmt.Errorf("image manifest: %w", err)
	}
	m, err := ocimaterial.ParseDescription(image, subject.mediaType, mbody)
	if err != nil {
		return imageEntry{}, fmt.Errorf("image manifest: %w", err)
	}
	e.index.manifest = &ocimaterial.Layer{Digest: image, Size: int64(len(mbody)), MediaType: m.MediaType}
	e.blobs[image] = mbody

	layers := func(d *layoutDescriptor, what string, parse func([]byte, ocimaterial.Limits) ([]ocimaterial.Layer, error), limit int64) ([]ocimaterial.Layer, error) {
		if d == nil {
			return nil, nil
		}
		body, err := lr.blob(d.digest, d.size, s.limits.ManifestBytes)
		if err != nil {
			return nil, fmt.Errorf("%s manifest: %w", what, err)
		}
		ls, err := parse(body, s.limits)
		if err != nil {
			return nil, fmt.Errorf("%s manifest %s: %w", what, d.digest, err)
		}
		for i, l := range ls {
			b, err := lr.blob(l.Digest, l.Size, limit)
			if err != nil {
				return nil, fmt.Errorf("%s manifest %s layer %d: %w", what, d.digest, i, err)
			}
			e.blobs[l.Digest] = b
		}
		return ls, nil
	}
	if e.index.signatures, err = layers(sigs, "signature", ocimaterial.ParseSignatureManifest, s.limits.PayloadBytes); err != nil {
		return imageEntry{}, err
	}
	for i, l := range e.index.signatures {
		if l.MediaType != ocimaterial.SimpleSigningMediaType {
			return imageEntry{}, fmt.Errorf("signature manifest layer %d: media type %q, want %q", i, l.MediaType, ocimaterial.SimpleSigningMediaType)
		}
	}
	if e.index.attestations, err = layers(atts, "attestation", ocimaterial.ParseAttestationManifest, s.limits.EnvelopeBytes); err != nil {
		return imageEntry{}, err
	}
	for _, d := range others {
		if d.mediaType != "" && d.mediaType != ocimaterial.MediaTypeOCIManifest {
			continue
		}
		body, err := lr.blob(d.digest, d.size, s.limits.ManifestBytes)
		if err != nil {
			return imageEntry{}, fmt.Errorf("manifest %s: %w", d.digest, err)
		}
		rm, err := ocimaterial.ParseReferrerManifest(body)
		if err != nil {
			return imageEntry{}, fmt.Errorf("manifest %s: %w", d.digest, err)
		}
		l, ok, err := ocimaterial.BundleLayer(rm, image, s.limits)
		if err != nil {
			return imageEntry{}, fmt.Errorf("manifest %s: %w", d.digest, err)
		}
		if !ok {
			continue
		}
		b, err := lr.blob(l.Digest, l.Size, s.limits.BundleBytes)
		if err != nil {
			return imageEntry{}, fmt.Errorf("bundle of manifest %s: %w", d.digest, err)
		}
		e.blobs[l.Digest] = b
		e.index.bundles = append(e.index.bundles, bundleDescriptor{Layer: ocimaterial.Layer{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType}, artifactType: rm.ArtifactType})
	}
	e.index = mergeIndex(localIndex{image: image}, e.index)
	if err := e.index.check(s.limits); err != nil {
		return imageEntry{}, err
	}
	return e, nil
}

func checkLayoutVersion(body []byte) error {
	if err := ocimaterial.CheckJSON(body); err != nil {
		return err
	}
	o, err := ocimaterial.DecodeObject(body)
	if err != nil {
		return err
	}
	v, err := requireString(o, "imageLayoutVersion")
	if err != nil {
		return err
	}
	if v != "1.0.0" {
		return fmt.Errorf("imageLayoutVersion %q, want 1.0.0", v)
	}
	return nil
}

// parseLayoutIndex reads a layout's index.json: an OCI index of at most max
// manifests, each with a digest and a size; "kind" comes from the
// annotations. Other descriptor fields (platform, urls) are allowed, as the
// OCI spec allows them, and not used.
func parseLayoutIndex(body []byte, max int) ([]layoutDescriptor, error) {
	if err := ocimaterial.CheckJSON(body); err != nil {
		return nil, err
	}
	o, err := ocimaterial.DecodeObject(body)
	if err != nil {
		return nil, err
	}
	if v, ok, err := o.Int64("schemaVersion"); err != nil {
		return nil, err
	} else if !ok || v != 2 {
		return nil, errors.New("schemaVersion must be 2")
	}
	mt, err := o.Str("mediaType")
	if err != nil {
		return nil, err
	}
	if mt != "" && mt != ocimaterial.MediaTypeOCIIndex {
		return nil, fmt.Errorf("media type %q is not an OCI index", mt)
	}
	if o.Has("layers") || o.Has("config") {
		return nil, errors.New("ambiguous, has layers or config")
	}
	raw, err := requireArray(o, "manifests")
	if err != nil {
		return nil, err
	}
	if len(raw) > max {
		return nil, fmt.Errorf("%d manifests, limit %d: %w", len(raw), max, source.ErrLimit)
	}
	out := make([]layoutDescriptor, 0, len(raw))
	for i, r := range raw {
		d, err := parseLayoutDescriptor(r)
		if err != nil {
			return nil, fmt.Errorf("manifest %d: %w", i, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func parseLayoutDescriptor(raw json.RawMessage) (layoutDescriptor, error) {
	o, err := ocimaterial.DecodeObject(raw)
	if err != nil {
		return layoutDescriptor{}, err
	}
	var d layoutDescriptor
	if d.mediaType, err = o.Str("mediaType"); err != nil {
		return layoutDescriptor{}, err
	}
	ds, err := requireString(o, "digest")
	if err != nil {
		return layoutDescriptor{}, err
	}
	if d.digest, err = v1.NewHash(ds); err != nil {
		return layoutDescriptor{}, fmt.Errorf("digest: %w", err)
	}
	size, ok, err := o.Int64("size")
	switch {
	case err != nil:
		return layoutDescriptor{}, err
	case !ok:
		return layoutDescriptor{}, errors.New("size missing")
	case size < 0:
		return layoutDescriptor{}, fmt.Errorf("negative size %d", size)
	}
	d.size = size
	ann, err := o.StringMap("annotations")
	if err != nil {
		return layoutDescriptor{}, err
	}
	d.kind = ann[layoutKindAnnotation]
	return d, nil
}
