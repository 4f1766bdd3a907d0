package source

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

func readTestdata(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func defaultLimits() ocimaterial.Limits {
	l, _ := ocimaterial.Limits{}.WithDefaults()
	return l
}

func TestSignatureTag(t *testing.T) {
	h256 := strings.Repeat("ab", 32)
	h512 := strings.Repeat("cd", 64)
	tests := []struct {
		ref  string
		want string
	}{
		{"127.0.0.1:5000/app@sha256:" + h256, "127.0.0.1:5000/app:sha256-" + h256 + ".sig"},
		{"registry.example.com/a/b/c@sha512:" + h512, "registry.example.com/a/b/c:sha512-" + h512 + ".sig"},
		{"nginx@sha256:" + h256, "index.docker.io/library/nginx:sha256-" + h256 + ".sig"},
	}
	for _, tc := range tests {
		d, err := name.NewDigest(tc.ref)
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		got, err := SignatureTag(d)
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		if got.String() != tc.want {
			t.Errorf("SignatureTag(%s) = %s, want %s", tc.ref, got, tc.want)
		}
	}
}

// The manifest and payload that cosign v2.6.5 wrote (testdata), read and
// checked against cosign's public key.
func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
