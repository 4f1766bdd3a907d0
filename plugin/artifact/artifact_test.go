package artifact

import "testing"

func TestPlatformChild(t *testing.T) {
	m := Manifest{Children: []Child{
		{Digest: "a", Platform: "linux/arm/v7"},
		{Digest: "b", Platform: "linux/arm64/v8"},
		{Digest: "c", Platform: "linux/amd64"},
		{Digest: "d", Platform: "windows/amd64"},
	}}
	tests := []struct{ platform, want string }{
		{"linux/amd64", "c"},
		{"linux/arm64", "b"},
		{"linux/arm64/v8", "b"},
		{"linux/arm/v7", "a"},
		{"linux/arm/v6", ""},
		{"linux/s390x", ""},
		{"windows/amd64", "d"},
	}
	for _, tt := range tests {
		if got := m.PlatformChild(tt.platform); got != tt.want {
			t.Errorf("PlatformChild(%q) = %q, want %q", tt.platform, got, tt.want)
		}
	}
}

func TestIsIndex(t *testing.T) {
	for mt, want := range map[string]bool{
		"application/vnd.oci.image.index.v1+json":                   true,
		"application/vnd.docker.distribution.manifest.list.v2+json": true,
		"application/vnd.oci.image.manifest.v1+json":                false,
		"": false,
	} {
		if got := (Manifest{MediaType: mt}).IsIndex(); got != want {
			t.Errorf("IsIndex(%q) = %v", mt, got)
		}
	}
}
