package source

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

// Defaults for NewRegistry. They match what a node runs with unless the
// operator says otherwise.
const (
	// DefaultHostsDir is containerd's registry host configuration
	// directory, read so that one hosts.toml configures both containerd and
	// sealgate.
	DefaultHostsDir = "/etc/containerd/certs.d"
	// DefaultTimeout bounds one HTTP request (connect, TLS, headers and
	// body). It is per request, not per call; the caller's context bounds
	// the whole call.
	DefaultTimeout = 5 * time.Second
)

type options struct {
	hostsDir  string
	keychain  authn.Keychain
	timeout   time.Duration
	limits    ocimaterial.Limits
	transport http.RoundTripper
	observe   RequestObserver
	// registriesConf, when set, replaces the hosts.toml configuration.
	registriesConf *registriesConf
}

// Option configures a Registry. Options are checked by NewRegistry, so a bad
// configuration fails at start-up rather than on the first container.
type Option func(*options) error

// WithHostsDir sets containerd's registry host directory (certs.d). Mirrors,
// server overrides, plain HTTP, CAs, client certificates, capabilities and
// path overrides are read from <dir>/<host>/hosts.toml exactly as containerd
// reads them. A directory that does not exist means "no configuration": each
// registry is reached at its own name, as containerd would.
func WithHostsDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("hosts dir must not be empty")
		}
		o.hostsDir = dir
		return nil
	}
}

// WithKeychain sets where registry credentials come from. The keychain is
// asked for the host actually contacted (a mirror's own name for a mirror),
// as containerd does. Default authn.DefaultKeychain (docker's config.json,
// honouring DOCKER_CONFIG).
func WithKeychain(k authn.Keychain) Option {
	return func(o *options) error {
		if k == nil {
			return errors.New("keychain must not be nil")
		}
		o.keychain = k
		return nil
	}
}

// WithTimeout bounds each HTTP request to a registry host. A host that does
// not answer in time counts as unreachable and the next host is tried.
// Default DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be positive, got %s", d)
		}
		o.timeout = d
		return nil
	}
}

// WithLimits bounds the sizes and counts a registry may make us read.
func WithLimits(l ocimaterial.Limits) Option {
	return func(o *options) error {
		l, err := l.WithDefaults()
		if err != nil {
			return err
		}
		o.limits = l
		return nil
	}
}

// WithTransport replaces the HTTP transport for every registry host. It is
// meant for tests (counting or failing requests): the TLS settings of
// hosts.toml (ca, client, skip_verify) are carried by containerd's own
// RequestObserver is told about every request made to a registry host:
// the host, how long until the reply's headers (or the failure), and the
// error (nil for any reply, 404 included). It must not block.
type RequestObserver func(host string, took time.Duration, err error)

// WithRequestObserver reports every registry request to f, for metrics.
func WithRequestObserver(f RequestObserver) Option {
	return func(o *options) error {
		if f == nil {
			return errors.New("nil request observer")
		}
		o.observe = f
		return nil
	}
}

// transport, which this one replaces.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		if rt == nil {
			return errors.New("transport must not be nil")
		}
		o.transport = rt
		return nil
	}
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		hostsDir: DefaultHostsDir,
		keychain: authn.DefaultKeychain,
		timeout:  DefaultTimeout,
	}
	o.limits, _ = ocimaterial.Limits{}.WithDefaults()
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("nil option")
		}
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	fi, err := os.Stat(o.hostsDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// No host configuration: defaults, as containerd.
	case err != nil:
		return nil, fmt.Errorf("hosts dir: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("hosts dir %s is not a directory", o.hostsDir)
	}
	return o, nil
}
