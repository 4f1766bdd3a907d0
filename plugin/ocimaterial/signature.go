// Package ocimaterial reads the shapes in which cosign and Sigstore store
// signature material in OCI: signature and attestation manifests at
// cosign's tags, bundle referrers, image manifests and indexes. It parses
// them strictly and within Limits into the artifact types package verify
// checks, for every place material comes from (the registry source, the
// local bundle store, an export file), so that all read it one way.
package ocimaterial

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sealgate/sealgate/plugin/artifact"
)

// Media types and annotation keys of cosign's classic signature scheme, as
// written by cosign v2 (pkg/oci/static, pkg/types).
const (
	// SimpleSigningMediaType is the media type of a signature layer: the
	// simple-signing JSON payload that the signature covers.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"

	AnnotationSignature   = "dev.cosignproject.cosign/signature"
	AnnotationCertificate = "dev.sigstore.cosign/certificate"
	AnnotationChain       = "dev.sigstore.cosign/chain"
	AnnotationBundle      = "dev.sigstore.cosign/bundle"
	AnnotationTimestamp   = "dev.sigstore.cosign/rfc3161timestamp"
)

// Manifest media types that a digest may name.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func IsIndexMediaType(mt string) bool {
	return mt == MediaTypeOCIIndex || mt == MediaTypeDockerList
}

// Layer is one layer descriptor of a manifest at one of cosign's
// tags (a signature or an attestation), before its blob is fetched.
type Layer struct {
	Digest      v1.Hash
	Size        int64
	MediaType   string
	Annotations map[string]string
}

// ParseSignatureManifest reads the manifest found at a signature tag. It
// checks sizes and counts against lim before any blob is fetched, so a
// hostile manifest cannot make us fetch more than lim allows.
func ParseSignatureManifest(body []byte, lim Limits) ([]Layer, error) {
	return parseLayerManifest(body, "signature", lim.Signatures, lim.PayloadBytes, nil)
}

// ParseSignatureManifestCounted is ParseSignatureManifest, adding the
// layers it leaves out (malformed, over a limit) to skipped when not nil.
func ParseSignatureManifestCounted(body []byte, lim Limits, skipped *int) ([]Layer, error) {
	return parseLayerManifest(body, "signature", lim.Signatures, lim.PayloadBytes, skipped)
}

// parseLayerManifest reads an image manifest whose layers are cosign's
// signatures or attestations: at most maxLayers layers of at most maxBytes
// each.
// skipped, when not nil, is increased by the layers left out.
func parseLayerManifest(body []byte, kind string, maxLayers int, maxBytes int64, skipped *int) ([]Layer, error) {
	if err := CheckJSON(body); err != nil {
		return nil, err
	}
	m, err := DecodeObject(body)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if v, ok, err := m.Int64("schemaVersion"); err != nil {
		return nil, err
	} else if !ok || v != 2 {
		return nil, fmt.Errorf("manifest: schemaVersion must be 2")
	}
	mt, err := m.Str("mediaType")
	if err != nil {
		return nil, err
	}
	switch mt {
	case "", MediaTypeOCIManifest, MediaTypeDockerManifest:
	default:
		return nil, fmt.Errorf("manifest: media type %q is not an image manifest", mt)
	}
	if m.Has("manifests") {
		return nil, errors.New("manifest: ambiguous, has both layers and manifests")
	}
	raw, err := m.Array("layers")
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	// Junk must not hide a valid signature: a layer that does not parse or
	// is over the size limit is skipped, and layers past maxLayers (or past
	// the bytes all layers may add up to) are not fetched. The first layers
	// are kept: cosign appends, so what was signed first cannot be pushed
	// out by what is appended after it.
	layers := make([]Layer, 0, min(len(raw), maxLayers))
	var total int64
	for _, r := range raw {
		if len(layers) == maxLayers {
			break
		}
		l, err := ParseLayer(r, maxBytes)
		if err != nil || total+l.Size > maxLayerBytes(maxBytes, maxLayers) {
			continue
		}
		total += l.Size
		layers = append(layers, l)
	}
	if skipped != nil {
		*skipped += len(raw) - len(layers)
	}
	return layers, nil
}

// maxLayerBytes bounds what all layers of one manifest may add up to: a
// sixteenth of each layer's limit times their number, at least one whole
// layer. Real signatures are far below their limit (a simple-signing
// payload is under 1 KiB).
func maxLayerBytes(maxBytes int64, maxLayers int) int64 {
	return max(maxBytes, maxBytes*int64(maxLayers)/16)
}

func ParseLayer(raw []byte, maxBytes int64) (Layer, error) {
	d, err := DecodeObject(raw)
	if err != nil {
		return Layer{}, err
	}
	var l Layer
	ds, err := d.Str("digest")
	if err != nil {
		return Layer{}, err
	}
	if l.Digest, err = v1.NewHash(ds); err != nil {
		return Layer{}, fmt.Errorf("digest: %w", err)
	}
	size, ok, err := d.Int64("size")
	switch {
	case err != nil:
		return Layer{}, err
	case !ok:
		return Layer{}, errors.New("size missing")
	case size < 0:
		return Layer{}, fmt.Errorf("negative size %d", size)
	case size > maxBytes:
		return Layer{}, fmt.Errorf("size %d, limit %d: %w", size, maxBytes, ErrLimit)
	}
	l.Size = size
	if l.MediaType, err = d.Str("mediaType"); err != nil {
		return Layer{}, err
	}
	if l.Annotations, err = d.StringMap("annotations"); err != nil {
		return Layer{}, err
	}
	return l, nil
}

// CheckBlob checks a fetched blob against the descriptor that named it.
func CheckBlob(want v1.Hash, size int64, blob []byte) error {
	if int64(len(blob)) != size {
		return fmt.Errorf("blob %s has %d bytes, descriptor says %d", want, len(blob), size)
	}
	return CheckDigest(want, blob)
}

func CheckDigest(want v1.Hash, b []byte) error {
	h, err := v1.Hasher(want.Algorithm)
	if err != nil {
		return err
	}
	h.Write(b)
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("content hashes to %s:%s, not %s", want.Algorithm, got, want)
	}
	return nil
}

// NewSignature turns a signature layer and its payload into the material
// that package verify checks. The payload must already be checked against
// the layer's digest (CheckBlob).
//
// A signature annotation that is not valid base64 is not dropped: the
// signature is returned with an empty Signature and the problem written into
// Origin, so that verify rejects it with a reason an operator can read
// instead of it vanishing silently.
func NewSignature(l Layer, payload []byte, attached, origin string) artifact.Signature {
	s := artifact.Signature{
		Payload:  bytes.Clone(payload),
		Attached: attached,
		Origin:   origin,
	}
	if b64, ok := l.Annotations[AnnotationSignature]; ok {
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			s.Origin += " (signature annotation is not valid base64)"
		} else {
			s.Signature = sig
		}
	}
	if v, ok := l.Annotations[AnnotationCertificate]; ok {
		s.Certificate = []byte(v)
	}
	if v, ok := l.Annotations[AnnotationChain]; ok {
		s.Chain = []byte(v)
	}
	if v, ok := l.Annotations[AnnotationBundle]; ok {
		s.RekorBundle = []byte(v)
	}
	if v, ok := l.Annotations[AnnotationTimestamp]; ok {
		s.Timestamp = []byte(v)
	}
	return s
}

// ParseDescription reads the manifest or index that digest names. body must
// hash to want; the media type comes from the body, which the digest covers,
// and only when the body has none from the Content-Type header. A body that
// could be read both as an index and as a manifest is rejected, so a signed
// index cannot be presented as a single manifest (or the reverse).
func ParseDescription(want v1.Hash, contentType string, body []byte) (artifact.Manifest, error) {
	if err := CheckDigest(want, body); err != nil {
		return artifact.Manifest{}, err
	}
	if err := CheckJSON(body); err != nil {
		return artifact.Manifest{}, err
	}
	m, err := DecodeObject(body)
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	mt, err := m.Str("mediaType")
	if err != nil {
		return artifact.Manifest{}, err
	}
	hasManifests := m.Has("manifests")
	hasImage := m.Has("layers") || m.Has("config")
	if mt == "" && contentType != "" {
		if ct, _, err := mime.ParseMediaType(contentType); err == nil {
			mt = ct
		}
	}
	if mt == "" {
		switch {
		case hasManifests:
			mt = MediaTypeOCIIndex
		case hasImage:
			mt = MediaTypeOCIManifest
		default:
			return artifact.Manifest{}, errors.New("manifest: no media type and neither layers nor manifests")
		}
	}
	switch {
	case IsIndexMediaType(mt) && hasImage:
		return artifact.Manifest{}, fmt.Errorf("manifest: ambiguous, %s with layers or config", mt)
	case !IsIndexMediaType(mt) && hasManifests:
		return artifact.Manifest{}, fmt.Errorf("manifest: ambiguous, %s with manifests", mt)
	}
	out := artifact.Manifest{Digest: want.String(), MediaType: mt}
	if !IsIndexMediaType(mt) {
		return out, nil
	}
	raw, err := m.Array("manifests")
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("index: %w", err)
	}
	for i, r := range raw {
		c, err := parseChild(r)
		if err != nil {
			return artifact.Manifest{}, fmt.Errorf("index manifest %d: %w", i, err)
		}
		out.Children = append(out.Children, c)
	}
	return out, nil
}

func parseChild(raw []byte) (artifact.Child, error) {
	d, err := DecodeObject(raw)
	if err != nil {
		return artifact.Child{}, err
	}
	ds, err := d.Str("digest")
	if err != nil {
		return artifact.Child{}, err
	}
	h, err := v1.NewHash(ds)
	if err != nil {
		return artifact.Child{}, fmt.Errorf("digest: %w", err)
	}
	mt, err := d.Str("mediaType")
	if err != nil {
		return artifact.Child{}, err
	}
	c := artifact.Child{Digest: h.String(), MediaType: mt}
	p, err := d.Obj("platform")
	if err != nil || p == nil {
		return c, err
	}
	// The platform is kept exactly as listed: the runtime's matcher
	// normalises it (x86_64, case, variants) when it chooses.
	var spec specs.Platform
	for key, dst := range map[string]*string{"os": &spec.OS, "architecture": &spec.Architecture, "variant": &spec.Variant, "os.version": &spec.OSVersion} {
		if *dst, err = p.Str(key); err != nil {
			return artifact.Child{}, fmt.Errorf("platform: %w", err)
		}
		if key != "os.version" && strings.Contains(*dst, "/") {
			return artifact.Child{}, fmt.Errorf("platform: %s %q contains a slash", key, *dst)
		}
	}
	if spec.OSFeatures, err = p.Strings("os.features"); err != nil {
		return artifact.Child{}, fmt.Errorf("platform: %w", err)
	}
	c.Spec = &spec
	if spec.OS != "" && spec.Architecture != "" {
		c.Platform = spec.OS + "/" + spec.Architecture
		if spec.Variant != "" {
			c.Platform += "/" + spec.Variant
		}
	}
	return c, nil
}
