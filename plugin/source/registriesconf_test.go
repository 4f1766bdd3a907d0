package source

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// TestRegistriesConfSources: registries.conf read with containers/image's
// parser gives, for a repository, its mirrors (prefix rewritten to each
// mirror's location) then its own location; insecure endpoints over HTTPS
// then HTTP; a blocked registry is an error; a registry not configured is
// asked at its own name over HTTPS.
func TestRegistriesConfSources(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(conf, []byte(`unqualified-search-registries = []

[[registry]]
prefix = "upstream.example.com/team"
location = "upstream.example.com/team"

[[registry.mirror]]
location = "mirror.example.com/cache/team"
insecure = true

[[registry]]
location = "blocked.example.com"
blocked = true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := makeOptions([]Option{WithHostsDir(t.TempDir()), WithRegistriesConf(conf, filepath.Join(dir, "none"), t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	c := o.registriesConf
	show := func(repo string) ([]string, error) {
		r, err := name.NewRepository(repo)
		if err != nil {
			t.Fatal(err)
		}
		srcs, err := c.sources(r)
		var out []string
		for _, s := range srcs {
			out = append(out, s.host.Scheme+"://"+s.repo.Name())
		}
		return out, err
	}
	tests := []struct {
		repo string
		want []string
	}{
		{"upstream.example.com/team/app", []string{"https://mirror.example.com/cache/team/app", "http://mirror.example.com/cache/team/app", "https://upstream.example.com/team/app"}},
		{"upstream.example.com/other/app", []string{"https://upstream.example.com/other/app"}},
		{"elsewhere.example.com/app", []string{"https://elsewhere.example.com/app"}},
	}
	for _, tc := range tests {
		got, err := show(tc.repo)
		if err != nil || strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: %q %v, want %q", tc.repo, got, err, tc.want)
		}
	}
	if _, err := show("blocked.example.com/app"); !errors.Is(err, ErrBlocked) {
		t.Errorf("blocked registry: %v, want ErrBlocked", err)
	}
	// A changed file is read again.
	if err := os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := show("upstream.example.com/team/app"); err != nil || len(got) != 1 {
		t.Errorf("after the mirror was removed: %q %v", got, err)
	}
}
