package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"go.yaml.in/yaml/v3"

	"github.com/sealgate/sealgate/internal/strictjson"
)

// The kubelet's configuration and plugin API versions this package speaks.
const (
	ConfigAPIVersion   = "kubelet.config.k8s.io/v1"
	ConfigKind         = "CredentialProviderConfig"
	ProviderAPIVersion = "credentialprovider.kubelet.k8s.io/v1"
)

// Bounds on a plugin run.
const (
	execTimeout    = 15 * time.Second
	maxPluginReply = 1 << 20
)

// ErrProviderConfig wraps every error of a CredentialProviderConfig file.
var ErrProviderConfig = errors.New("invalid credential provider configuration")

// providerConfig is kubelet's CredentialProviderConfig (v1), read strictly.
type providerConfig struct {
	APIVersion string           `yaml:"apiVersion"`
	Kind       string           `yaml:"kind"`
	Providers  []providerSource `yaml:"providers"`
}

type providerSource struct {
	Name                 string   `yaml:"name"`
	MatchImages          []string `yaml:"matchImages"`
	DefaultCacheDuration string   `yaml:"defaultCacheDuration"`
	APIVersion           string   `yaml:"apiVersion"`
	Args                 []string `yaml:"args"`
	Env                  []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
}

// Providers is a keychain that runs kubelet's credential provider exec
// plugins, as the kubelet does for an image it pulls: the first provider
// whose matchImages match the repository is asked, and its answer is kept
// for the duration it gives.
type Providers struct {
	providers []provider

	mu    sync.Mutex
	cache map[string]cached
}

var _ authn.Keychain = (*Providers)(nil)

type provider struct {
	name         string
	bin          string
	match        []string
	args         []string
	env          []string
	apiVersion   string
	defaultCache time.Duration
}

type cached struct {
	auth    map[string]authn.AuthConfig
	expires time.Time
}

// LoadProviders reads a CredentialProviderConfig file (YAML or JSON) and
// finds each provider's plugin in binDir, as the kubelet's
// --image-credential-provider-config and --image-credential-provider-bin-dir
// do. Errors wrap ErrProviderConfig and name the file and provider.
func LoadProviders(configFile, binDir string) (*Providers, error) {
	data, err := readBounded(configFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProviderConfig, err)
	}
	return ParseProviders(configFile, data, binDir)
}

// ParseProviders is LoadProviders from the file's content; file names it in
// messages.
func ParseProviders(file string, data []byte, binDir string) (*Providers, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrProviderConfig, file, fmt.Sprintf(format, a...))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cfg providerConfig
	if err := dec.Decode(&cfg); err != nil {
		return nil, fail("%v", err)
	}
	if cfg.APIVersion != ConfigAPIVersion || cfg.Kind != ConfigKind {
		return nil, fail("apiVersion %q kind %q; want %s %s", cfg.APIVersion, cfg.Kind, ConfigAPIVersion, ConfigKind)
	}
	if len(cfg.Providers) == 0 {
		return nil, fail("no providers")
	}
	p := &Providers{cache: map[string]cached{}}
	for i, s := range cfg.Providers {
		at := fmt.Sprintf("providers[%d] (%s)", i, s.Name)
		switch {
		case s.Name == "" || s.Name != filepath.Base(s.Name) || s.Name == "." || s.Name == "..":
			return nil, fail("%s: name must be the plugin's file name in the bin dir", at)
		case len(s.MatchImages) == 0:
			return nil, fail("%s: matchImages is empty", at)
		case !strings.HasPrefix(s.APIVersion, "credentialprovider.kubelet.k8s.io/"):
			return nil, fail("%s: apiVersion %q; want %s", at, s.APIVersion, ProviderAPIVersion)
		}
		d := time.Duration(0)
		if s.DefaultCacheDuration != "" {
			var err error
			if d, err = time.ParseDuration(s.DefaultCacheDuration); err != nil || d < 0 {
				return nil, fail("%s: defaultCacheDuration %q is not a duration", at, s.DefaultCacheDuration)
			}
		}
		for _, m := range s.MatchImages {
			if _, _, _, err := splitImage(m); err != nil {
				return nil, fail("%s: matchImages %q: %v", at, m, err)
			}
		}
		bin := filepath.Join(binDir, s.Name)
		if st, err := os.Stat(bin); err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
			return nil, fail("%s: no executable plugin %s", at, bin)
		}
		pr := provider{name: s.Name, bin: bin, match: s.MatchImages, args: s.Args, apiVersion: s.APIVersion, defaultCache: d}
		for _, e := range s.Env {
			pr.env = append(pr.env, e.Name+"="+e.Value)
		}
		p.providers = append(p.providers, pr)
	}
	return p, nil
}

// Resolve asks the first provider that matches target's repository.
func (p *Providers) Resolve(target authn.Resource) (authn.Authenticator, error) {
	image := target.String()
	for _, pr := range p.providers {
		if !slices.ContainsFunc(pr.match, func(m string) bool { return Match(m, image) }) {
			continue
		}
		auth, err := p.credentials(pr, image, target.RegistryStr())
		if err != nil {
			return nil, fmt.Errorf("credential provider %s for %s: %w", pr.name, image, err)
		}
		if cfg, ok := pick(auth, image); ok {
			return authn.FromConfig(cfg), nil
		}
	}
	return authn.Anonymous, nil
}

// response is the plugin's CredentialProviderResponse.
type response struct {
	APIVersion    string                       `json:"apiVersion"`
	Kind          string                       `json:"kind"`
	CacheKeyType  string                       `json:"cacheKeyType"`
	CacheDuration string                       `json:"cacheDuration,omitempty"`
	Auth          map[string]map[string]string `json:"auth"`
}

func (p *Providers) credentials(pr provider, image, registry string) (map[string]authn.AuthConfig, error) {
	now := time.Now()
	p.mu.Lock()
	for _, k := range []string{pr.name + "\x00image\x00" + image, pr.name + "\x00registry\x00" + registry, pr.name + "\x00global"} {
		if c, ok := p.cache[k]; ok && now.Before(c.expires) {
			p.mu.Unlock()
			return c.auth, nil
		}
	}
	p.mu.Unlock()

	req, _ := json.Marshal(map[string]string{"apiVersion": pr.apiVersion, "kind": "CredentialProviderRequest", "image": image})
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pr.bin, pr.args...)
	cmd.Env = append(os.Environ(), pr.env...)
	cmd.Stdin = bytes.NewReader(req)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &limited{w: &stdout, n: maxPluginReply + 1}
	cmd.Stderr = &limited{w: &stderr, n: 4 << 10}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("run %s: %v: %s", pr.bin, err, strings.TrimSpace(stderr.String()))
	}
	auth, key, ttl, err := parseResponse(stdout.Bytes(), pr)
	if err != nil {
		return nil, err
	}
	switch key {
	case "Image":
		key = pr.name + "\x00image\x00" + image
	case "Registry":
		key = pr.name + "\x00registry\x00" + registry
	default:
		key = pr.name + "\x00global"
	}
	if ttl > 0 {
		p.mu.Lock()
		p.cache[key] = cached{auth: auth, expires: now.Add(ttl)}
		p.mu.Unlock()
	}
	return auth, nil
}

// parseResponse reads a plugin's answer strictly and bounded.
func parseResponse(b []byte, pr provider) (map[string]authn.AuthConfig, string, time.Duration, error) {
	if len(b) > maxPluginReply {
		return nil, "", 0, fmt.Errorf("answer larger than %d bytes", maxPluginReply)
	}
	var r response
	if err := strictjson.Unmarshal(b, &r, 8); err != nil {
		return nil, "", 0, fmt.Errorf("answer: %w", err)
	}
	if r.Kind != "CredentialProviderResponse" || r.APIVersion != pr.apiVersion {
		return nil, "", 0, fmt.Errorf("answer is %s %s, want %s CredentialProviderResponse", r.APIVersion, r.Kind, pr.apiVersion)
	}
	switch r.CacheKeyType {
	case "Image", "Registry", "Global":
	default:
		return nil, "", 0, fmt.Errorf("answer: cacheKeyType %q; want Image, Registry or Global", r.CacheKeyType)
	}
	ttl := pr.defaultCache
	if r.CacheDuration != "" {
		d, err := time.ParseDuration(r.CacheDuration)
		if err != nil || d < 0 {
			return nil, "", 0, fmt.Errorf("answer: cacheDuration %q is not a duration", r.CacheDuration)
		}
		ttl = d
	}
	auth := make(map[string]authn.AuthConfig, len(r.Auth))
	for pattern, a := range r.Auth {
		for k := range a {
			if k != "username" && k != "password" {
				return nil, "", 0, fmt.Errorf("answer: auth[%q] has unknown key %q", pattern, k)
			}
		}
		if _, _, _, err := splitImage(pattern); err != nil {
			return nil, "", 0, fmt.Errorf("answer: auth key %q: %v", pattern, err)
		}
		auth[pattern] = authn.AuthConfig{Username: a["username"], Password: a["password"]}
	}
	return auth, r.CacheKeyType, ttl, nil
}

// pick returns the credentials of the most specific auth entry matching
// image.
func pick(auth map[string]authn.AuthConfig, image string) (authn.AuthConfig, bool) {
	best := ""
	for k := range auth {
		if Match(k, image) && (best == "" || len(k) > len(best) || len(k) == len(best) && k < best) {
			best = k
		}
	}
	if best == "" {
		return authn.AuthConfig{}, false
	}
	return auth[best], true
}

// Match reports whether image matches pattern by the kubelet's rules for
// matchImages: the same number of host labels, each matched as a glob
// ("*.example.com" matches "a.example.com", not "a.b.example.com"), the
// port equal when the pattern names one, and the pattern's path a prefix of
// the image's.
func Match(pattern, image string) bool {
	ph, pp, ppath, err := splitImage(pattern)
	if err != nil {
		return false
	}
	ih, ip, ipath, err := splitImage(image)
	if err != nil {
		return false
	}
	pl, il := strings.Split(ph, "."), strings.Split(ih, ".")
	if len(pl) != len(il) {
		return false
	}
	for i := range pl {
		if ok, err := path.Match(pl[i], il[i]); err != nil || !ok {
			return false
		}
	}
	if pp != "" && pp != ip {
		return false
	}
	return strings.HasPrefix(ipath, ppath)
}

// splitImage splits "host[:port][/path]" (a scheme is allowed and
// ignored).
func splitImage(s string) (host, port, p string, err error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", "", err
	}
	if u.Hostname() == "" {
		return "", "", "", errors.New("no host")
	}
	if _, err := path.Match(u.Hostname(), ""); err != nil {
		return "", "", "", err
	}
	return u.Hostname(), u.Port(), u.Path, nil
}

// limited writes at most n bytes to w and drops the rest.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(b []byte) (int, error) {
	if l.n <= 0 {
		return len(b), nil
	}
	k := min(len(b), l.n)
	l.n -= k
	_, err := l.w.Write(b[:k])
	return len(b), err
}
