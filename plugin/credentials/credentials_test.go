package credentials

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, image string
		want           bool
	}{
		// The kubelet's documented examples.
		{"123456789.dkr.ecr.us-east-1.amazonaws.com", "123456789.dkr.ecr.us-east-1.amazonaws.com/app", true},
		{"*.azurecr.io", "example.azurecr.io/app", true},
		{"gcr.io", "gcr.io/project/app", true},
		{"*.*.registry.io", "a.b.registry.io/app", true},
		{"registry.io:8080/path", "registry.io:8080/path/app", true},
		{"*.azurecr.io", "a.b.azurecr.io/app", false},
		{"*.azurecr.io", "azurecr.io/app", false},
		{"registry.io:8080", "registry.io:5000/app", false},
		{"registry.io/path", "registry.io/other/app", false},
		{"registry.io", "registry.io:5000/app", true},
		{"127.0.0.1:5000", "127.0.0.1:5000/app", true},
		{"[", "registry.io/app", false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.image); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.image, got, tt.want)
		}
	}
}

// plugin writes an exec plugin that answers with reply and counts its runs.
func plugin(t *testing.T, dir, reply string) (bin, count string) {
	t.Helper()
	count = filepath.Join(dir, "runs")
	bin = filepath.Join(dir, "test-provider")
	script := fmt.Sprintf("#!/bin/sh\ncat >%s/request\necho run >>%s\ncat <<'EOF'\n%s\nEOF\n", dir, count, reply)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, count
}

const testConfig = `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: test-provider
    matchImages: ["*.example.com", "127.0.0.1:5000"]
    defaultCacheDuration: 1h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env:
      - name: TOKEN
        value: x
`

func TestProviders(t *testing.T) {
	dir := t.TempDir()
	_, count := plugin(t, dir, `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":{"*.example.com":{"username":"u","password":"p"},"reg.example.com/private":{"username":"u2","password":"p2"}}}`)
	p, err := ParseProviders("config.yaml", []byte(testConfig), dir)
	if err != nil {
		t.Fatal(err)
	}
	resolve := func(repo string) authn.AuthConfig {
		t.Helper()
		r, err := name.NewRepository(repo)
		if err != nil {
			t.Fatal(err)
		}
		a, err := p.Resolve(r)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		return *cfg
	}
	if got := resolve("reg.example.com/private/app"); got.Username != "u2" || got.Password != "p2" {
		t.Errorf("most specific entry not chosen: %+v", got)
	}
	if got := resolve("reg.example.com/other"); got.Username != "u" {
		t.Errorf("wildcard entry: %+v", got)
	}
	if got := resolve("other.io/app"); got != (authn.AuthConfig{}) {
		t.Errorf("an unmatched registry got credentials: %+v", got)
	}
	runs, _ := os.ReadFile(count)
	if n := strings.Count(string(runs), "run"); n != 1 {
		t.Errorf("the plugin ran %d times; the registry's answer is cached for an hour", n)
	}
	req, _ := os.ReadFile(filepath.Join(dir, "request"))
	if !strings.Contains(string(req), `"kind":"CredentialProviderRequest"`) || !strings.Contains(string(req), `"image":"reg.example.com/private/app"`) {
		t.Errorf("request %s", req)
	}
}

func TestProvidersRefuse(t *testing.T) {
	dir := t.TempDir()
	plugin(t, dir, `{}`)
	tests := []struct{ name, config, want string }{
		{"unknown key", strings.Replace(testConfig, "args:", "tokenAttributes: {}\n    args:", 1), "tokenAttributes"},
		{"duplicate key", strings.Replace(testConfig, "    args:", "    args: [a]\n    args:", 1), "already defined"},
		{"wrong kind", strings.Replace(testConfig, "kind: CredentialProviderConfig", "kind: Pod", 1), "want kubelet.config.k8s.io/v1 CredentialProviderConfig"},
		{"missing plugin", strings.Replace(testConfig, "name: test-provider", "name: absent", 1), "no executable plugin"},
		{"path in name", strings.Replace(testConfig, "name: test-provider", "name: ../x", 1), "file name"},
		{"bad duration", strings.Replace(testConfig, "1h", "soon", 1), "defaultCacheDuration"},
	}
	for _, tt := range tests {
		_, err := ParseProviders("config.yaml", []byte(tt.config), dir)
		if !errors.Is(err, ErrProviderConfig) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "config.yaml") {
			t.Errorf("%s: %v, want ErrProviderConfig naming the file and %q", tt.name, err, tt.want)
		}
	}
	// A plugin whose answer is malformed: an error, never credentials.
	for _, reply := range []string{`not json`, `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":{},"auth":{}}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Nope","auth":{}}`} {
		plugin(t, dir, reply)
		p, err := ParseProviders("config.yaml", []byte(testConfig), dir)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := name.NewRepository("reg.example.com/app")
		if _, err := p.Resolve(r); err == nil {
			t.Errorf("answer %s: no error", reply)
		}
	}
}

func TestDockerConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.json")
	kc := DockerConfig{Path: file}
	r, _ := name.NewRepository("127.0.0.1:5000/app")
	if a, err := kc.Resolve(r); err != nil || a != authn.Anonymous {
		t.Fatalf("missing file: %v %v", a, err)
	}
	if err := os.WriteFile(file, []byte(`{"auths":{"127.0.0.1:5000":{"auth":"dTpw"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := kc.Resolve(r)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := a.Authorization()
	if cfg.Username != "u" || cfg.Password != "p" {
		t.Errorf("credentials %+v", cfg)
	}
	hub, _ := name.NewRepository("library/busybox")
	if a, err := kc.Resolve(hub); err != nil || a != authn.Anonymous {
		t.Errorf("Docker Hub without an entry: %v %v", a, err)
	}
	if err := os.WriteFile(file, []byte(`{"auths":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Resolve(r); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("malformed file: %v", err)
	}
}

func FuzzParseProviders(f *testing.F) {
	f.Add([]byte(testConfig))
	f.Add([]byte(`{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseProviders("fuzz.yaml", b, dir)
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":{"*.example.com":{"username":"u","password":"p"}}}`))
	pr := provider{apiVersion: ProviderAPIVersion}
	f.Fuzz(func(t *testing.T, b []byte) {
		auth, _, _, err := parseResponse(b, pr)
		if err == nil {
			for k := range auth {
				if _, _, _, err := splitImage(k); err != nil {
					t.Fatalf("accepted auth key %q: %v", k, err)
				}
			}
		}
	})
}
