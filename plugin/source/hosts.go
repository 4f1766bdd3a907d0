package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// hostConfig resolves a registry name to its hosts with containerd's own
// certs.d parser, so that one hosts.toml configures containerd and sealgate
// alike. The result is kept per registry and rebuilt when the files of the
// registry's host directory change, so that HTTP connections (and the
// HTTPS-to-HTTP fallback state containerd keeps for loopback registries) are
// reused between calls.
type hostConfig struct {
	hostDir   func(string) (string, error)
	configure docker.RegistryHosts

	mu    sync.Mutex
	cache map[string]hostSet
}

type hostSet struct {
	fingerprint string
	hosts       []docker.RegistryHost
}

func newHostConfig(dir string, rt http.RoundTripper) *hostConfig {
	opts := config.HostOptions{HostDir: config.HostDirFromRoot(dir)}
	if rt != nil {
		opts.UpdateClient = func(c *http.Client) error {
			c.Transport = rt
			return nil
		}
	}
	return &hostConfig{
		hostDir:   opts.HostDir,
		configure: config.ConfigureHosts(quietContext(), opts),
		cache:     map[string]hostSet{},
	}
}

// quietContext carries a logger that discards: containerd's parser logs
// (for instance when it falls back from a broken hosts.toml, exactly as
// containerd itself does) and this package does not log.
func quietContext() context.Context {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return log.WithLogger(context.Background(), logrus.NewEntry(l))
}

// hosts returns the hosts to try for registry, in order: mirrors first, the
// server (or the registry itself) last.
func (c *hostConfig) hosts(registry string) ([]docker.RegistryHost, error) {
	fp, err := c.fingerprint(registry)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	set, ok := c.cache[registry]
	c.mu.Unlock()
	if ok && set.fingerprint == fp {
		return set.hosts, nil
	}
	hosts, err := c.configure(registry)
	if err != nil {
		return nil, fmt.Errorf("host configuration for %s: %w", registry, err)
	}
	c.mu.Lock()
	c.cache[registry] = hostSet{fingerprint: fp, hosts: hosts}
	c.mu.Unlock()
	return hosts, nil
}

// fingerprint names the host directory used for registry and the name, size
// and modification time of each file in it. Files referenced from outside
// the directory (absolute ca paths) are not watched.
func (c *hostConfig) fingerprint(registry string) (string, error) {
	dir, err := c.hostDir(registry)
	if errdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("host configuration for %s: %w", registry, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("host configuration for %s: %w", registry, err)
	}
	var b strings.Builder
	b.WriteString(dir)
	for _, e := range entries {
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("host configuration for %s: %w", registry, err)
		}
		b.WriteString("\x00" + filepath.Base(e.Name()) + "\x00" + strconv.FormatInt(fi.Size(), 10) +
			"\x00" + strconv.FormatInt(fi.ModTime().UnixNano(), 10))
	}
	return b.String(), nil
}

// isProxy reports whether host serves registry as a mirror, by containerd's
// rule (docker.io is served by registry-1.docker.io, not mirrored by it).
func isProxy(registry, host string) bool {
	if registry == host {
		return false
	}
	return registry != "docker.io" || host != "registry-1.docker.io"
}
