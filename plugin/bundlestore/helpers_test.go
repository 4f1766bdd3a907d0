package bundlestore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sealgate/sealgate/plugin/source"
)

// newRegistrySource is the registry source a node builds, with an empty
// certs.d so that the host's own configuration does not leak into tests.
func newRegistrySource(t testing.TB, opts ...source.Option) *source.Registry {
	t.Helper()
	r, err := source.NewRegistry(append([]source.Option{source.WithHostsDir(t.TempDir())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readTestdata(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
