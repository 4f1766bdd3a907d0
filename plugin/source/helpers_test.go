package source

import "testing"

func newTestSource(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	// An empty certs.d by default, so the host's own configuration does
	// not leak into tests.
	opts = append([]Option{WithHostsDir(t.TempDir())}, opts...)
	r, err := NewRegistry(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
