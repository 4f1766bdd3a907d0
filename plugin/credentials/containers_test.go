package credentials

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func basic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// username resolves repo with k and returns the user name, "" for
// anonymous.
func username(t *testing.T, k authn.Keychain, repo string) string {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	a, err := k.Resolve(r)
	if err != nil {
		t.Fatalf("resolve %s: %v", repo, err)
	}
	if a == authn.Anonymous {
		return ""
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Username
}

// TestContainersAuth: the most specific key wins, as containers-auth.json(5)
// says and CRI-O does; Docker Hub is docker.io; an absent file holds none.
func TestContainersAuth(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.json")
	write(t, path, `{"auths":{
		"reg.example:5000":{"auth":"`+basic("host", "p")+`"},
		"reg.example:5000/team":{"auth":"`+basic("team", "p")+`"},
		"reg.example:5000/team/app":{"auth":"`+basic("app", "p")+`"},
		"docker.io":{"auth":"`+basic("hub", "p")+`"}}}`)
	regs := filepath.Join(dir, "registries.conf")
	write(t, regs, "")
	k := ContainersAuth{Path: path, RegistriesConf: regs, RegistriesConfDir: filepath.Join(dir, "none")}
	for repo, want := range map[string]string{
		"reg.example:5000/team/app":   "app",
		"reg.example:5000/team/other": "team",
		"reg.example:5000/x/y":        "host",
		"other.example/team/app":      "",
		"library/busybox":             "hub",
	} {
		if got := username(t, k, repo); got != want {
			t.Errorf("%s: user %q, want %q", repo, got, want)
		}
	}
	if got := username(t, ContainersAuth{Path: filepath.Join(dir, "absent.json"), RegistriesConf: regs, RegistriesConfDir: k.RegistriesConfDir}, "reg.example:5000/team/app"); got != "" {
		t.Errorf("an absent file gave user %q", got)
	}
	write(t, path, `{"auths":`)
	if _, err := k.Resolve(name.MustParseReference("reg.example:5000/a").Context()); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a broken auth file: %v", err)
	}
	write(t, path, `{"auths":{}, "pad":"`+strings.Repeat("x", maxConfigSize)+`"}`)
	if _, err := k.Resolve(name.MustParseReference("reg.example:5000/a").Context()); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("an oversized auth file: %v", err)
	}
}

// TestCRIOAuthFile: global_auth_file from crio.conf, overridden by the
// last drop-in setting it (CRI-O's order); no configuration: not found.
func TestCRIOAuthFile(t *testing.T) {
	dir := t.TempDir()
	conf, dropins := filepath.Join(dir, "crio.conf"), filepath.Join(dir, "crio.conf.d")
	if _, found, err := CRIOAuthFile(conf, dropins); found || err != nil {
		t.Fatalf("no configuration: found %v, %v", found, err)
	}
	write(t, conf, "[crio.image]\nglobal_auth_file = \"/etc/a.json\"\n")
	write(t, filepath.Join(dropins, "20-b.conf"), "[crio.image]\nglobal_auth_file = \"/etc/b.json\"\n")
	write(t, filepath.Join(dropins, "10-other.conf"), "[crio.image]\nglobal_auth_file = \"/etc/ignored.json\"\npause_image = \"x\"\n")
	write(t, filepath.Join(dropins, "30-unrelated.conf"), "[crio.runtime]\nlog_level = \"info\"\n")
	p, found, err := CRIOAuthFile(conf, dropins)
	if err != nil || !found || p != "/etc/b.json" {
		t.Fatalf("got %q %v %v, want /etc/b.json", p, found, err)
	}
	os.RemoveAll(dropins)
	write(t, conf, "[crio.runtime]\n")
	if p, found, err := CRIOAuthFile(conf, dropins); err != nil || !found || p != "" {
		t.Fatalf("unset: got %q %v %v, want the default", p, found, err)
	}
	write(t, conf, "[crio.image\n")
	if _, _, err := CRIOAuthFile(conf, dropins); err == nil || !strings.Contains(err.Error(), conf) {
		t.Errorf("a broken crio.conf: %v", err)
	}
}

// TestCRIOAuth: the keychain follows CRI-O's configuration at every
// resolution.
func TestCRIOAuth(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "crio.conf")
	regs := filepath.Join(dir, "registries.conf")
	write(t, regs, "")
	k := CRIOAuth{Config: conf, ConfigDir: filepath.Join(dir, "crio.conf.d"), RegistriesConf: regs, RegistriesConfDir: filepath.Join(dir, "none")}
	if got := username(t, k, "reg.example/app"); got != "" {
		t.Errorf("no CRI-O: user %q", got)
	}
	for _, user := range []string{"one", "two"} {
		auth := filepath.Join(dir, user+".json")
		write(t, auth, `{"auths":{"reg.example":{"auth":"`+basic(user, "p")+`"}}}`)
		write(t, conf, "[crio.image]\nglobal_auth_file = \""+auth+"\"\n")
		if got := username(t, k, "reg.example/app"); got != user {
			t.Errorf("user %q, want %q", got, user)
		}
	}
}
