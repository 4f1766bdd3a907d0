package source

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/pkg/sysregistriesv2"
	"github.com/containers/image/v5/pkg/tlsclientconfig"
	"github.com/containers/image/v5/types"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// ErrBlocked wraps a registry that registries.conf blocks.
var ErrBlocked = errors.New("registry blocked")

// registriesConf resolves repositories to hosts as CRI-O (containers/image)
// does, from registries.conf and registries.conf.d, with containers/image's
// own parser, so that one set of files configures CRI-O and sealgate: the
// mirrors of the longest matching prefix first, with the prefix rewritten
// to each mirror's location, then the registry's own location; insecure
// endpoints over HTTPS without verification, then plain HTTP; blocked
// registries refused; TLS from /etc/containers/certs.d/<host>/.
type registriesConf struct {
	sys      types.SystemContext
	certsDir string
	base     http.RoundTripper

	mu      sync.Mutex
	fp      string
	clients map[string]*http.Client // host + insecure
}

// WithRegistriesConf makes the registry source reach registries as CRI-O
// does, from registries.conf (path), the drop-ins in dir and the TLS files
// under certsDir (/etc/containers/certs.d), instead of containerd's
// certs.d hosts.toml files.
func WithRegistriesConf(path, dir, certsDir string) Option {
	return func(o *options) error {
		if path == "" {
			return errors.New("registries.conf path must not be empty")
		}
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("registries.conf: %w", err)
		}
		o.registriesConf = &registriesConf{sys: types.SystemContext{SystemRegistriesConfPath: path, SystemRegistriesConfDirPath: dir},
			certsDir: certsDir, clients: map[string]*http.Client{}}
		return nil
	}
}

// fingerprint names the configuration files with their sizes and times.
func (c *registriesConf) fingerprint() string {
	var b strings.Builder
	add := func(p string) {
		if fi, err := os.Stat(p); err == nil {
			b.WriteString(p + "\x00" + strconv.FormatInt(fi.Size(), 10) + "\x00" + strconv.FormatInt(fi.ModTime().UnixNano(), 10) + "\x00")
		}
	}
	add(c.sys.SystemRegistriesConfPath)
	if c.sys.SystemRegistriesConfDirPath != "" {
		entries, _ := os.ReadDir(c.sys.SystemRegistriesConfDirPath)
		for _, e := range entries {
			add(filepath.Join(c.sys.SystemRegistriesConfDirPath, e.Name()))
		}
	}
	return b.String()
}

// pullSource is one place to ask for a repository's material.
type pullSource struct {
	host docker.RegistryHost
	repo name.Repository
}

// sources returns where to ask for repo's material, in order. Material is
// always fetched for a digest, so digest-only mirrors take part and
// tag-only ones do not, as for a pull by digest.
func (c *registriesConf) sources(repo name.Repository) ([]pullSource, error) {
	c.mu.Lock()
	if fp := c.fingerprint(); fp != c.fp {
		sysregistriesv2.InvalidateCache()
		c.fp, c.clients = fp, map[string]*http.Client{}
	}
	c.mu.Unlock()
	named, err := reference.ParseNormalizedNamed(repo.Name())
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, err)
	}
	canonical, err := reference.WithDigest(named, digest.Digest("sha256:"+strings.Repeat("0", 64)))
	if err != nil {
		return nil, err
	}
	reg, err := sysregistriesv2.FindRegistry(&c.sys, named.Name())
	if err != nil {
		return nil, fmt.Errorf("registries.conf: %w", err)
	}
	if reg == nil {
		// Not configured: the registry at its own name, over HTTPS.
		reg = &sysregistriesv2.Registry{Prefix: reference.Domain(named), Endpoint: sysregistriesv2.Endpoint{Location: reference.Domain(named)}}
	}
	if reg.Blocked {
		return nil, fmt.Errorf("%w: %s is blocked in %s", ErrBlocked, reg.Prefix, c.sys.SystemRegistriesConfPath)
	}
	pulls, err := reg.PullSourcesFromReference(canonical)
	if err != nil {
		return nil, fmt.Errorf("registries.conf: %w", err)
	}
	var out []pullSource
	for _, p := range pulls {
		host := reference.Domain(p.Reference)
		r, err := name.NewRepository(host+"/"+reference.Path(p.Reference), name.WeakValidation)
		if err != nil {
			return nil, fmt.Errorf("registries.conf: %s: %w", p.Reference.Name(), err)
		}
		schemes := []string{"https"}
		if p.Endpoint.Insecure {
			// containers/image tries HTTPS without verification, then
			// plain HTTP.
			schemes = append(schemes, "http")
		}
		for _, scheme := range schemes {
			client, err := c.client(host, p.Endpoint.Insecure)
			if err != nil {
				return nil, err
			}
			out = append(out, pullSource{repo: r, host: docker.RegistryHost{
				Client: client, Host: host, Scheme: scheme, Path: "/v2",
				Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
			}})
		}
	}
	return out, nil
}

// client returns the HTTP client for host: its TLS files from
// certsDir/<host>/, verification off for an insecure endpoint.
func (c *registriesConf) client(host string, insecure bool) (*http.Client, error) {
	key := host + "\x00" + strconv.FormatBool(insecure)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[key]; ok {
		return cl, nil
	}
	tlsc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // registries.conf's insecure = true
	if c.certsDir != "" {
		if err := tlsclientconfig.SetupCertificates(filepath.Join(c.certsDir, host), tlsc); err != nil {
			return nil, fmt.Errorf("TLS files for %s in %s: %w", host, c.certsDir, err)
		}
	}
	base, ok := c.base.(*http.Transport)
	if !ok || base == nil {
		base = http.DefaultTransport.(*http.Transport)
	}
	t := base.Clone()
	t.TLSClientConfig = tlsc
	cl := &http.Client{Transport: t}
	c.clients[key] = cl
	return cl, nil
}
