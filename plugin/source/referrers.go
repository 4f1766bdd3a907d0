package source

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

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
func parseReferrers(body []byte, lim ocimaterial.Limits) ([]referrer, error) {
	return parseReferrersCounted(body, lim, nil)
}

// parseReferrersCounted is parseReferrers, adding to skipped (when not nil)
// the entries that were malformed, over a limit, or past lim.Referrers.
func parseReferrersCounted(body []byte, lim ocimaterial.Limits, skipped *int) ([]referrer, error) {
	if err := ocimaterial.CheckJSON(body); err != nil {
		return nil, err
	}
	idx, err := ocimaterial.DecodeObject(body)
	if err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	}
	if v, ok, err := idx.Int64("schemaVersion"); err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	} else if !ok || v != 2 {
		return nil, errors.New("referrers index: schemaVersion must be 2")
	}
	mt, err := idx.Str("mediaType")
	if err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	}
	if mt != "" && mt != ocimaterial.MediaTypeOCIIndex {
		return nil, fmt.Errorf("referrers index: media type %q is not an OCI index", mt)
	}
	if idx.Has("layers") || idx.Has("config") {
		return nil, errors.New("referrers index: ambiguous, has layers or config")
	}
	raw, err := idx.Array("manifests")
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
	d, err := ocimaterial.DecodeObject(raw)
	if err != nil {
		return referrer{}, false, err
	}
	var r referrer
	ds, err := d.Str("digest")
	if err != nil {
		return referrer{}, false, err
	}
	if r.Digest, err = v1.NewHash(ds); err != nil {
		return referrer{}, false, fmt.Errorf("digest: %w", err)
	}
	size, ok, err := d.Int64("size")
	switch {
	case err != nil:
		return referrer{}, false, err
	case !ok:
		return referrer{}, false, errors.New("size missing")
	case size < 0:
		return referrer{}, false, fmt.Errorf("negative size %d", size)
	}
	r.Size = size
	mt, err := d.Str("mediaType")
	if err != nil {
		return referrer{}, false, err
	}
	if r.ArtifactType, err = d.Str("artifactType"); err != nil {
		return referrer{}, false, err
	}
	if _, err := d.StringMap("annotations"); err != nil {
		return referrer{}, false, err
	}
	candidate := (mt == "" || mt == ocimaterial.MediaTypeOCIManifest) &&
		(r.ArtifactType == "" || r.ArtifactType == ocimaterial.MediaTypeEmptyConfig || ocimaterial.IsBundleMediaType(r.ArtifactType))
	return r, candidate, nil
}
