package ocimaterial

import (
	"encoding/json"
	"errors"
	"fmt"

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

// MediaTypeEmptyConfig is the OCI empty descriptor's media type. cosign
// writes it as the config of a bundle referrer; registries that list a
// referrer's config media type instead of its artifactType (and cosign's
// own tag fallback index, which go-containerregistry v0.20 writes that way)
// report it as the artifact type.
const MediaTypeEmptyConfig = "application/vnd.oci.empty.v1+json"

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

// ReferrerManifest is what a referrer's own manifest says about itself.
type ReferrerManifest struct {
	// Image is false for anything but an image manifest (an index, an
	// artifact manifest), which cannot hold a bundle.
	Image bool
	// ArtifactType is the manifest's artifactType or, without one, its
	// config's media type (the OCI rule).
	ArtifactType string
	// Subject is the digest the manifest's subject names, "" for none.
	Subject string
	// Layers are the manifest's layer descriptors, unparsed.
	Layers []json.RawMessage
}

// ParseReferrerManifest reads a referrer's manifest strictly. body must
// already be checked against the digest that named it.
func ParseReferrerManifest(body []byte) (ReferrerManifest, error) {
	if err := CheckJSON(body); err != nil {
		return ReferrerManifest{}, err
	}
	m, err := DecodeObject(body)
	if err != nil {
		return ReferrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	if v, ok, err := m.Int64("schemaVersion"); err != nil {
		return ReferrerManifest{}, fmt.Errorf("manifest: %w", err)
	} else if !ok || v != 2 {
		return ReferrerManifest{}, errors.New("manifest: schemaVersion must be 2")
	}
	mt, err := m.Str("mediaType")
	if err != nil {
		return ReferrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	hasManifests := m.Has("manifests")
	hasImage := m.Has("layers") || m.Has("config")
	switch {
	case hasManifests && hasImage:
		return ReferrerManifest{}, errors.New("manifest: ambiguous, has both layers or config and manifests")
	case IsIndexMediaType(mt) && hasImage:
		return ReferrerManifest{}, fmt.Errorf("manifest: ambiguous, %s with layers or config", mt)
	case hasManifests || IsIndexMediaType(mt):
		return ReferrerManifest{}, nil
	case mt != "" && mt != MediaTypeOCIManifest && mt != MediaTypeDockerManifest:
		return ReferrerManifest{}, nil
	}
	out := ReferrerManifest{Image: true}
	if out.ArtifactType, err = m.Str("artifactType"); err != nil {
		return ReferrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	config, err := m.Obj("config")
	if err != nil {
		return ReferrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	if out.ArtifactType == "" && config != nil {
		if out.ArtifactType, err = config.Str("mediaType"); err != nil {
			return ReferrerManifest{}, fmt.Errorf("manifest config: %w", err)
		}
	}
	subject, err := m.Obj("subject")
	if err != nil {
		return ReferrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	if subject != nil {
		ds, err := subject.Str("digest")
		if err != nil {
			return ReferrerManifest{}, fmt.Errorf("manifest subject: %w", err)
		}
		h, err := v1.NewHash(ds)
		if err != nil {
			return ReferrerManifest{}, fmt.Errorf("manifest subject digest: %w", err)
		}
		out.Subject = h.String()
	}
	if out.Layers, err = m.Array("layers"); err != nil {
		return ReferrerManifest{}, fmt.Errorf("manifest: %w", err)
	}
	return out, nil
}

// BundleLayer decides whether a referrer's manifest holds a bundle for
// subject and returns the layer that holds it. A manifest that is not a
// bundle by its own artifact type, or whose subject is another digest, is
// not for us (false, nil): a listing may name anything, and the fallback
// index is a tag anyone who may push can write. A manifest that says it is a
// bundle for subject but does not have exactly one bundle layer within
// lim.BundleBytes is an error.
func BundleLayer(m ReferrerManifest, subject v1.Hash, lim Limits) (Layer, bool, error) {
	if !m.Image || !IsBundleMediaType(m.ArtifactType) || m.Subject != subject.String() {
		return Layer{}, false, nil
	}
	if len(m.Layers) != 1 {
		return Layer{}, false, fmt.Errorf("bundle manifest has %d layers, want 1", len(m.Layers))
	}
	l, err := ParseLayer(m.Layers[0], lim.BundleBytes)
	if err != nil {
		return Layer{}, false, fmt.Errorf("bundle layer: %w", err)
	}
	if !IsBundleMediaType(l.MediaType) {
		return Layer{}, false, fmt.Errorf("bundle layer: media type %q is not a Sigstore bundle", l.MediaType)
	}
	return l, true, nil
}
