package source

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Media types of Sigstore bundles, as the bundle's own mediaType field, the
// layer that holds it and the artifact type of its manifest spell them
// (sigstore-go pkg/bundle; cosign v2 --new-bundle-format writes
// BundleMediaTypeV03 as both the manifest's artifactType and the layer's
// media type).
const (
	BundleMediaTypeV01    = "application/vnd.dev.sigstore.bundle+json;version=0.1"
	BundleMediaTypeV02    = "application/vnd.dev.sigstore.bundle+json;version=0.2"
	BundleMediaTypeV03    = "application/vnd.dev.sigstore.bundle+json;version=0.3"
	BundleMediaTypeV03Alt = "application/vnd.dev.sigstore.bundle.v0.3+json"
)

// mediaTypeEmptyConfig is the OCI empty descriptor's media type. cosign
// writes it as the config of a bundle referrer; registries that list a
// referrer's config media type instead of its artifactType (and cosign's
// own tag fallback index, which go-containerregistry v0.20 writes that way)
// report it as the artifact type.
const mediaTypeEmptyConfig = "application/vnd.oci.empty.v1+json"

// IsBundleMediaType reports whether mt names a Sigstore bundle version that
// sealgate reads (v0.1 to v0.3). The comparison is exact, as sigstore-go's:
// a media type with other parameters or spacing is not a bundle.
func IsBundleMediaType(mt string) bool {
	switch mt {
	case BundleMediaTypeV01, BundleMediaTypeV02, BundleMediaTypeV03, BundleMediaTypeV03Alt:
		return true
	}
	return false
}

// ReferrersTag names the tag of the OCI referrers tag schema (the fallback
// for registries without the referrers API, which cosign and
// go-containerregistry maintain): "<repo>:sha256-<hex>", an index listing
// the manifests whose subject is image.
func ReferrersTag(image name.Digest) (name.Tag, error) {
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return name.Tag{}, fmt.Errorf("image digest: %w", err)
	}
	return image.Context().Tag(h.Algorithm + "-" + h.Hex), nil
}

// referrer is one entry of a referrers listing that may hold a bundle.
type referrer struct {
	Digest       v1.Hash
	Size         int64
	ArtifactType string // as the listing says; never trusted to select
}

// parseReferrers reads a referrers listing: the reply of the referrers API
// or the index at the fallback tag. Every entry is parsed strictly; it
// returns, in listing order and without duplicates, the image manifests
// whose listed artifact type does not rule out a bundle (a bundle type, the
// empty config type, or none). The listing is trusted only to leave entries
// out, which can cost an image its bundles but never admit one: whether an
// entry is a bundle is decided from its manifest. More candidates than
// lim.Referrers is an error wrapping ErrLimit.
func parseReferrers(body []byte, lim Limits) ([]referrer, error) {
	return parseReferrersCounted(body, lim, nil)
}

// parseReferrersCounted is parseReferrers, adding to skipped (when not nil)
// the entries that were malformed, over a limit, or past lim.Referrers.
func parseReferrersCounted(body []byte, lim Limits, skipped *int) ([]referrer, error) {
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	idx, err := decodeObject(body)
	if err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	}
	if v, ok, err := idx.int64("schemaVersion"); err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	} else if !ok || v != 2 {
		return nil, errors.New("referrers index: schemaVersion must be 2")
	}
	mt, err := idx.str("mediaType")
	if err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	}
	if mt != "" && mt != mediaTypeOCIIndex {
		return nil, fmt.Errorf("referrers index: media type %q is not an OCI index", mt)
	}
	if idx.has("layers") || idx.has("config") {
		return nil, errors.New("referrers index: ambiguous, has layers or config")
	}
	raw, err := idx.array("manifests")
	if err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	}
	// An entry that does not parse or is over the manifest limit is
	// skipped, and candidates past lim.Referrers are not fetched: junk
	// referrers cost bounded work and never hide a valid bundle listed
	// before them.
	var out []referrer
	seen := map[v1.Hash]bool{}
	junk := 0
	if skipped != nil {
		defer func() { *skipped += junk }()
	}
	for i, r := range raw {
		if len(out) == lim.Referrers {
			junk += len(raw) - i
			break
		}
		d, candidate, err := parseReferrerDescriptor(r)
		if err != nil || candidate && !seen[d.Digest] && d.Size > lim.ManifestBytes {
			junk++
			continue
		}
		if !candidate || seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		out = append(out, d)
	}
	return out, nil
}

// parseReferrerDescriptor reads one descriptor of a referrers listing and
// says whether it may be a bundle manifest.
func parseReferrerDescriptor(raw json.RawMessage) (referrer, bool, error) {
	d, err := decodeObject(raw)
	if err != nil {
		return referrer{}, false, err
	}
	var r referrer
	ds, err := d.str("digest")
	if err != nil {
		return referrer{}, false, err
	}
	if r.Digest, err = v1.NewHash(ds); err != nil {
		return referrer{}, false, fmt.Errorf("digest: %w", err)
	}
	size, ok, err := d.int64("size")
	switch {
	case err != nil:
		return referrer{}, false, err
	case !ok:
		return referrer{}, false, errors.New("size missing")
	case size < 0:
		return referrer{}, false, fmt.Errorf("negative size %d", size)
	}
	r.Size = size
	mt, err := d.str("mediaType")
	if err != nil {
		return referrer{}, false, err
	}
	if r.ArtifactType, err = d.str("artifactType"); err != nil {
		return referrer{}, false, err
	}
	if _, err := d.stringMap("annotations"); err != nil {
		return referrer{}, false, err
	}
	candidate := (mt == "" || mt == mediaTypeOCIManifest) &&
		(r.ArtifactType == "" || r.ArtifactType == mediaTypeEmptyConfig || IsBundleMediaType(r.ArtifactType))
	return r, candidate, nil
}

// referrerManifest is what a referrer's own manifest says about itself.
type referrerManifest struct {
	// Image is false for anything but an image manifest (an index, an
	// artifact manifest), which cannot hold a bundle.
	Image bool
	// ArtifactType is the manifest's artifactType or, without one, its
	// config's media type (the OCI rule).
	ArtifactType string
	// Subject is the digest the manifest's subject names, "" for none.
	Subject string
	layers  []json.RawMessage
}

// parseReferrerManifest reads a referrer's manifest strictly. body must
// already be checked against the digest that named it.
func parseReferrerManifest(body []byte) (referrerManifest, error) {
	if err := checkJSON(body); err != nil {
		return referrerManifest{}, err
	}
	m, err := decodeObject(body)
	if err != nil {
		return referrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	if v, ok, err := m.int64("schemaVersion"); err != nil {
		return referrerManifest{}, fmt.Errorf("manifest: %w", err)
	} else if !ok || v != 2 {
		return referrerManifest{}, errors.New("manifest: schemaVersion must be 2")
	}
	mt, err := m.str("mediaType")
	if err != nil {
		return referrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	hasManifests := m.has("manifests")
	hasImage := m.has("layers") || m.has("config")
	switch {
	case hasManifests && hasImage:
		return referrerManifest{}, errors.New("manifest: ambiguous, has both layers or config and manifests")
	case isIndexMediaType(mt) && hasImage:
		return referrerManifest{}, fmt.Errorf("manifest: ambiguous, %s with layers or config", mt)
	case hasManifests || isIndexMediaType(mt):
		return referrerManifest{}, nil
	case mt != "" && mt != mediaTypeOCIManifest && mt != mediaTypeDockerManifest:
		return referrerManifest{}, nil
	}
	out := referrerManifest{Image: true}
	if out.ArtifactType, err = m.str("artifactType"); err != nil {
		return referrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	config, err := m.obj("config")
	if err != nil {
		return referrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	if out.ArtifactType == "" && config != nil {
		if out.ArtifactType, err = config.str("mediaType"); err != nil {
			return referrerManifest{}, fmt.Errorf("manifest config: %w", err)
		}
	}
	subject, err := m.obj("subject")
	if err != nil {
		return referrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	if subject != nil {
		ds, err := subject.str("digest")
		if err != nil {
			return referrerManifest{}, fmt.Errorf("manifest subject: %w", err)
		}
		h, err := v1.NewHash(ds)
		if err != nil {
			return referrerManifest{}, fmt.Errorf("manifest subject digest: %w", err)
		}
		out.Subject = h.String()
	}
	if out.layers, err = m.array("layers"); err != nil {
		return referrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	return out, nil
}

// bundleLayer decides whether a referrer's manifest holds a bundle for
// subject and returns the layer that holds it. A manifest that is not a
// bundle by its own artifact type, or whose subject is another digest, is
// not for us (false, nil): a listing may name anything, and the fallback
// index is a tag anyone who may push can write. A manifest that says it is a
// bundle for subject but does not have exactly one bundle layer within
// lim.BundleBytes is an error.
func bundleLayer(m referrerManifest, subject v1.Hash, lim Limits) (signatureLayer, bool, error) {
	if !m.Image || !IsBundleMediaType(m.ArtifactType) || m.Subject != subject.String() {
		return signatureLayer{}, false, nil
	}
	if len(m.layers) != 1 {
		return signatureLayer{}, false, fmt.Errorf("bundle manifest has %d layers, want 1", len(m.layers))
	}
	l, err := parseSignatureLayer(m.layers[0], lim.BundleBytes)
	if err != nil {
		return signatureLayer{}, false, fmt.Errorf("bundle layer: %w", err)
	}
	if !IsBundleMediaType(l.MediaType) {
		return signatureLayer{}, false, fmt.Errorf("bundle layer: media type %q is not a Sigstore bundle", l.MediaType)
	}
	return l, true, nil
}
