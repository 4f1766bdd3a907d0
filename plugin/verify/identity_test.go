package verify

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/plugin/policy"
)

// TestSignedIdentity: how a payload's docker-reference must relate to the
// image, for each signedIdentity, as containers/image defines them.
func TestSignedIdentity(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	payload := func(ref string) []byte {
		return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, ref, digest)
	}
	remap := &policy.Remap{Prefix: "mirror.example.com/hub", SignedPrefix: "docker.io/library"}
	tagged := Subject{Repository: "quay.io/org/app", Tag: "v1", Digest: digest}
	byDigest := Subject{Repository: "quay.io/org/app", Digest: digest}
	mirrored := Subject{Repository: "mirror.example.com/hub/nginx", Tag: "1.27", Digest: digest}
	tests := []struct {
		name     string
		identity policy.SignedIdentity
		subject  Subject
		ref      string
		ok       bool
	}{
		{"exact: same tag", policy.MatchExact, tagged, "quay.io/org/app:v1", true},
		{"exact: other tag", policy.MatchExact, tagged, "quay.io/org/app:v2", false},
		{"exact: repository only", policy.MatchExact, tagged, "quay.io/org/app", false},
		{"exact: other repository", policy.MatchExact, tagged, "quay.io/org/other:v1", false},
		{"exact: by digest", policy.MatchExact, byDigest, "quay.io/org/app@" + digest, true},
		{"exact: by digest, payload with a tag", policy.MatchExact, byDigest, "quay.io/org/app:v1", false},
		{"repository: tag ignored", policy.MatchRepository, tagged, "quay.io/org/app:v9", true},
		{"remap: signed under the upstream name", policy.RemapIdentity, mirrored, "docker.io/library/nginx", true},
		{"remap: Hub short name", policy.RemapIdentity, mirrored, "nginx:1.27", true},
		{"remap: the mirror's own name no longer matches", policy.RemapIdentity, mirrored, "mirror.example.com/hub/nginx", false},
		{"remap: another upstream image", policy.RemapIdentity, mirrored, "docker.io/library/redis", false},
		{"remap: outside the prefix, plain repository match", policy.RemapIdentity, tagged, "quay.io/org/app", true},
		{"remap: prefix at a component boundary only", policy.RemapIdentity, Subject{Repository: "mirror.example.com/hubx/nginx", Digest: digest}, "docker.io/libraryx/nginx", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkPayload(payload(tt.ref), tt.subject, tt.identity, remap)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrReferenceMismatch) {
				t.Errorf("err = %v, want ErrReferenceMismatch", err)
			}
		})
	}
}
