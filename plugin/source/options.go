package source

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
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
	// DefaultManifestBytes bounds a manifest or index, and every other reply
	// that is not a signature payload (pings, tokens, error bodies).
	DefaultManifestBytes int64 = 4 << 20
	// DefaultPayloadBytes bounds one signature layer (a simple-signing
	// payload is well under 1 KiB; cosign itself caps payloads at 128 MiB,
	// which is far too much for a node's hot path).
	DefaultPayloadBytes int64 = 256 << 10
	// DefaultSignatures bounds the number of layers of a signature manifest
	// and of an attestation manifest that are fetched; the rest are skipped.
	DefaultSignatures = 128
	// DefaultEnvelopeBytes bounds one DSSE envelope of cosign's attestation
	// tag. An in-toto statement with a SLSA provenance predicate is a few
	// KiB; an SBOM put in a predicate can be far larger, and is not what a
	// node's admission path should download.
	DefaultEnvelopeBytes int64 = 1 << 20
	// DefaultBundleBytes bounds one Sigstore bundle (its certificate chain,
	// transparency-log entries and DSSE envelope or message signature).
	DefaultBundleBytes int64 = 1 << 20
	// DefaultReferrers bounds the referrers of one image whose manifests are
	// fetched to look for Sigstore bundles; the rest are skipped.
	DefaultReferrers = 64
)

// Limits bounds what a registry can make sealgate read. A hostile or broken
// registry must not be able to exhaust the node's memory or the runtime's
// request timeout. A zero field takes its default; a negative one is an
// error.
type Limits struct {
	// ManifestBytes bounds a manifest, an index and any other reply body
	// except signature payloads. Default DefaultManifestBytes.
	ManifestBytes int64
	// PayloadBytes bounds one signature layer. Default DefaultPayloadBytes.
	PayloadBytes int64
	// Signatures bounds the layers of one signature manifest, and of one
	// attestation manifest. Default DefaultSignatures.
	Signatures int
	// EnvelopeBytes bounds one DSSE envelope of an attestation manifest.
	// Default DefaultEnvelopeBytes.
	EnvelopeBytes int64
	// BundleBytes bounds one Sigstore bundle attached as a referrer.
	// Default DefaultBundleBytes.
	BundleBytes int64
	// Referrers bounds the referrers of one image that may hold a Sigstore
	// bundle (after duplicates and referrers that the listing says are of
	// another kind are dropped). More is an error wrapping ErrLimit, not a
	// silent cut: which ones to drop would be the registry's choice.
	// Default DefaultReferrers.
	Referrers int
}

func (l Limits) withDefaults() (Limits, error) {
	if l.ManifestBytes < 0 || l.PayloadBytes < 0 || l.Signatures < 0 ||
		l.EnvelopeBytes < 0 || l.BundleBytes < 0 || l.Referrers < 0 {
		return Limits{}, fmt.Errorf("limits must not be negative: %+v", l)
	}
	if l.ManifestBytes == 0 {
		l.ManifestBytes = DefaultManifestBytes
	}
	if l.PayloadBytes == 0 {
		l.PayloadBytes = DefaultPayloadBytes
	}
	if l.Signatures == 0 {
		l.Signatures = DefaultSignatures
	}
	if l.EnvelopeBytes == 0 {
		l.EnvelopeBytes = DefaultEnvelopeBytes
	}
	if l.BundleBytes == 0 {
		l.BundleBytes = DefaultBundleBytes
	}
	if l.Referrers == 0 {
		l.Referrers = DefaultReferrers
	}
	return l, nil
}

type options struct {
	hostsDir  string
	keychain  authn.Keychain
	timeout   time.Duration
	limits    Limits
	transport http.RoundTripper
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
func WithLimits(l Limits) Option {
	return func(o *options) error {
		l, err := l.withDefaults()
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
	o.limits, _ = Limits{}.withDefaults()
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
