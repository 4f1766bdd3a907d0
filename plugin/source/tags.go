package source

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

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

// AttestationTag names the tag under which cosign stores the attestations
// of image: "<repo>:sha256-<hex>.att". Exported so that tests and tools put
// attestations exactly where Registry looks for them.
func AttestationTag(image name.Digest) (name.Tag, error) {
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return name.Tag{}, fmt.Errorf("image digest: %w", err)
	}
	return image.Context().Tag(h.Algorithm + "-" + h.Hex + ".att"), nil
}
