package source

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
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

	annotationSignature   = "dev.cosignproject.cosign/signature"
	annotationCertificate = "dev.sigstore.cosign/certificate"
	annotationChain       = "dev.sigstore.cosign/chain"
	annotationBundle      = "dev.sigstore.cosign/bundle"
	annotationTimestamp   = "dev.sigstore.cosign/rfc3161timestamp"
)

// Manifest media types that a digest may name.
const (
	mediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func isIndexMediaType(mt string) bool {
	return mt == mediaTypeOCIIndex || mt == mediaTypeDockerList
}

// SignatureTag names the tag under which cosign stores the signatures of
// image: "<repo>:sha256-<hex>.sig" (likewise for sha512). Exported so that
// tests and tools put signatures exactly where Registry looks for them.
func SignatureTag(image name.Digest) (name.Tag, error) {
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return name.Tag{}, fmt.Errorf("image digest: %w", err)
	}
	return image.Context().Tag(h.Algorithm + "-" + h.Hex + ".sig"), nil
}

// signatureLayer is one layer descriptor of a manifest at one of cosign's
// tags (a signature or an attestation), before its blob is fetched.
type signatureLayer struct {
	Digest      v1.Hash
	Size        int64
	MediaType   string
	Annotations map[string]string
}

// parseSignatureManifest reads the manifest found at a signature tag. It
// checks sizes and counts against lim before any blob is fetched, so a
// hostile manifest cannot make us fetch more than lim allows.
func parseSignatureManifest(body []byte, lim Limits) ([]signatureLayer, error) {
	return parseLayerManifest(body, "signature", lim.Signatures, lim.PayloadBytes, nil)
}

// parseLayerManifest reads an image manifest whose layers are cosign's
// signatures or attestations: at most maxLayers layers of at most maxBytes
// each.
// skipped, when not nil, is increased by the layers left out.
func parseLayerManifest(body []byte, kind string, maxLayers int, maxBytes int64, skipped *int) ([]signatureLayer, error) {
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	m, err := decodeObject(body)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if v, ok, err := m.int64("schemaVersion"); err != nil {
		return nil, err
	} else if !ok || v != 2 {
		return nil, fmt.Errorf("manifest: schemaVersion must be 2")
	}
	mt, err := m.str("mediaType")
	if err != nil {
		return nil, err
	}
	switch mt {
	case "", mediaTypeOCIManifest, mediaTypeDockerManifest:
	default:
		return nil, fmt.Errorf("manifest: media type %q is not an image manifest", mt)
	}
	if m.has("manifests") {
		return nil, errors.New("manifest: ambiguous, has both layers and manifests")
	}
	raw, err := m.array("layers")
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	// Junk must not hide a valid signature: a layer that does not parse or
	// is over the size limit is skipped, and layers past maxLayers (or past
	// the bytes all layers may add up to) are not fetched. The first layers
	// are kept: cosign appends, so what was signed first cannot be pushed
	// out by what is appended after it.
	layers := make([]signatureLayer, 0, min(len(raw), maxLayers))
	var total int64
	for _, r := range raw {
		if len(layers) == maxLayers {
			break
		}
		l, err := parseSignatureLayer(r, maxBytes)
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

func parseSignatureLayer(raw []byte, maxBytes int64) (signatureLayer, error) {
	d, err := decodeObject(raw)
	if err != nil {
		return signatureLayer{}, err
	}
	var l signatureLayer
	ds, err := d.str("digest")
	if err != nil {
		return signatureLayer{}, err
	}
	if l.Digest, err = v1.NewHash(ds); err != nil {
		return signatureLayer{}, fmt.Errorf("digest: %w", err)
	}
	size, ok, err := d.int64("size")
	switch {
	case err != nil:
		return signatureLayer{}, err
	case !ok:
		return signatureLayer{}, errors.New("size missing")
	case size < 0:
		return signatureLayer{}, fmt.Errorf("negative size %d", size)
	case size > maxBytes:
		return signatureLayer{}, fmt.Errorf("size %d, limit %d: %w", size, maxBytes, ErrLimit)
	}
	l.Size = size
	if l.MediaType, err = d.str("mediaType"); err != nil {
		return signatureLayer{}, err
	}
	if l.Annotations, err = d.stringMap("annotations"); err != nil {
		return signatureLayer{}, err
	}
	return l, nil
}

// checkBlob checks a fetched blob against the descriptor that named it.
func checkBlob(want v1.Hash, size int64, blob []byte) error {
	if int64(len(blob)) != size {
		return fmt.Errorf("blob %s has %d bytes, descriptor says %d", want, len(blob), size)
	}
	return checkDigest(want, blob)
}

func checkDigest(want v1.Hash, b []byte) error {
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

// newSignature turns a signature layer and its payload into the material
// that package verify checks. The payload must already be checked against
// the layer's digest (checkBlob).
//
// A signature annotation that is not valid base64 is not dropped: the
// signature is returned with an empty Signature and the problem written into
// Origin, so that verify rejects it with a reason an operator can read
// instead of it vanishing silently.
func newSignature(l signatureLayer, payload []byte, attached, origin string) artifact.Signature {
	s := artifact.Signature{
		Payload:  bytes.Clone(payload),
		Attached: attached,
		Origin:   origin,
	}
	if b64, ok := l.Annotations[annotationSignature]; ok {
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			s.Origin += " (signature annotation is not valid base64)"
		} else {
			s.Signature = sig
		}
	}
	if v, ok := l.Annotations[annotationCertificate]; ok {
		s.Certificate = []byte(v)
	}
	if v, ok := l.Annotations[annotationChain]; ok {
		s.Chain = []byte(v)
	}
	if v, ok := l.Annotations[annotationBundle]; ok {
		s.RekorBundle = []byte(v)
	}
	if v, ok := l.Annotations[annotationTimestamp]; ok {
		s.Timestamp = []byte(v)
	}
	return s
}

// parseDescription reads the manifest or index that digest names. body must
// hash to want; the media type comes from the body, which the digest covers,
// and only when the body has none from the Content-Type header. A body that
// could be read both as an index and as a manifest is rejected, so a signed
// index cannot be presented as a single manifest (or the reverse).
func parseDescription(want v1.Hash, contentType string, body []byte) (artifact.Manifest, error) {
	if err := checkDigest(want, body); err != nil {
		return artifact.Manifest{}, err
	}
	if err := checkJSON(body); err != nil {
		return artifact.Manifest{}, err
	}
	m, err := decodeObject(body)
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	mt, err := m.str("mediaType")
	if err != nil {
		return artifact.Manifest{}, err
	}
	hasManifests := m.has("manifests")
	hasImage := m.has("layers") || m.has("config")
	if mt == "" && contentType != "" {
		if ct, _, err := mime.ParseMediaType(contentType); err == nil {
			mt = ct
		}
	}
	if mt == "" {
		switch {
		case hasManifests:
			mt = mediaTypeOCIIndex
		case hasImage:
			mt = mediaTypeOCIManifest
		default:
			return artifact.Manifest{}, errors.New("manifest: no media type and neither layers nor manifests")
		}
	}
	switch {
	case isIndexMediaType(mt) && hasImage:
		return artifact.Manifest{}, fmt.Errorf("manifest: ambiguous, %s with layers or config", mt)
	case !isIndexMediaType(mt) && hasManifests:
		return artifact.Manifest{}, fmt.Errorf("manifest: ambiguous, %s with manifests", mt)
	}
	out := artifact.Manifest{Digest: want.String(), MediaType: mt}
	if !isIndexMediaType(mt) {
		return out, nil
	}
	raw, err := m.array("manifests")
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
	d, err := decodeObject(raw)
	if err != nil {
		return artifact.Child{}, err
	}
	ds, err := d.str("digest")
	if err != nil {
		return artifact.Child{}, err
	}
	h, err := v1.NewHash(ds)
	if err != nil {
		return artifact.Child{}, fmt.Errorf("digest: %w", err)
	}
	mt, err := d.str("mediaType")
	if err != nil {
		return artifact.Child{}, err
	}
	c := artifact.Child{Digest: h.String(), MediaType: mt}
	p, err := d.obj("platform")
	if err != nil || p == nil {
		return c, err
	}
	// The platform is kept exactly as listed: the runtime's matcher
	// normalises it (x86_64, case, variants) when it chooses.
	var spec specs.Platform
	for key, dst := range map[string]*string{"os": &spec.OS, "architecture": &spec.Architecture, "variant": &spec.Variant, "os.version": &spec.OSVersion} {
		if *dst, err = p.str(key); err != nil {
			return artifact.Child{}, fmt.Errorf("platform: %w", err)
		}
		if key != "os.version" && strings.Contains(*dst, "/") {
			return artifact.Child{}, fmt.Errorf("platform: %s %q contains a slash", key, *dst)
		}
	}
	if spec.OSFeatures, err = p.strings("os.features"); err != nil {
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
