package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/sealgate/sealgate/plugin/artifact"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

// blobJobs bounds the blobs (signature payloads, envelopes, referrer
// manifests with their bundles) fetched at once for one image.
const blobJobs = 4

// Registry finds cosign's classic signatures and attestations (the
// "sha256-<hex>.sig" and ".att" tags) and Sigstore bundles attached as OCI
// 1.1 referrers in the image's registry, reached the way containerd reaches
// it: through the mirrors, servers and TLS settings of containerd's
// certs.d. It is safe for concurrent use; concurrent calls of one method for
// the same digest share one fetch.
type Registry struct {
	keychain authn.Keychain
	timeout  time.Duration
	limits   ocimaterial.Limits
	observe  RequestObserver
	hosts    *hostConfig

	signatures   flightGroup
	attestations flightGroup
	bundles      flightGroup
	describe     flightGroup

	pullers pullerCache
	replies replyCache
	// regconf, when set, resolves repositories as CRI-O does
	// (registries.conf) instead of containerd's hosts.toml.
	regconf *registriesConf

	// skipped counts junk left out: malformed or surplus layers and
	// referrers, blobs that failed beside others that did not.
	skipped atomic.Int64
}

var _ Source = (*Registry)(nil)

// Skipped is how many pieces of signature material were left out as junk
// (malformed, over a limit, past the count limits, failing beside valid
// ones) since the source was made.
func (r *Registry) Skipped() int64 { return r.skipped.Load() }

// NewRegistry returns a registry source. Options are validated here; the
// registry itself is first contacted on the first call.
func NewRegistry(opts ...Option) (*Registry, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("registry source: %w", err)
	}
	return &Registry{
		keychain: o.keychain,
		observe:  o.observe,
		timeout:  o.timeout,
		limits:   o.limits,
		hosts:    newHostConfig(o.hostsDir, o.transport),
		regconf:  o.registriesConf,
	}, nil
}

// Signatures returns the signatures under image's signature tag. The tag is
// asked only of hosts allowed to resolve tags ("pull" and "resolve"
// capabilities); payloads are fetched from hosts allowed to pull. A tag that
// no host has is no signatures: an empty slice and a nil error. The returned
// values are the caller's own.
func (r *Registry) Signatures(ctx context.Context, image name.Digest) ([]artifact.Signature, error) {
	v, err := r.signatures.do(ctx, image.String(), func(ctx context.Context) (any, error) {
		return r.fetchSignatures(ctx, image)
	})
	if err != nil {
		return nil, fmt.Errorf("fetch signatures for %s: %w", image, err)
	}
	shared := v.([]artifact.Signature)
	out := make([]artifact.Signature, len(shared))
	for i, s := range shared {
		out[i] = cloneSignature(s)
	}
	return out, nil
}

// Describe fetches the manifest that image names from a host allowed to
// pull, checks that it hashes to the image's digest and reports its media
// type and, for an index, its children. A digest that no host has is an
// error wrapping ErrNotFound.
func (r *Registry) Describe(ctx context.Context, image name.Digest) (artifact.Manifest, error) {
	v, err := r.describe.do(ctx, image.String(), func(ctx context.Context) (any, error) {
		return r.fetchDescription(ctx, image)
	})
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("describe %s: %w", image, err)
	}
	m := v.(artifact.Manifest)
	m.Children = append([]artifact.Child(nil), m.Children...)
	return m, nil
}

// Attestations returns the DSSE envelopes under image's attestation tag
// (cosign's "sha256-<hex>.att"), with the same host rules as Signatures. A
// tag that no host has is none: an empty slice and a nil error. The
// returned values are the caller's own.
func (r *Registry) Attestations(ctx context.Context, image name.Digest) ([]artifact.Attestation, error) {
	v, err := r.attestations.do(ctx, image.String(), func(ctx context.Context) (any, error) {
		return r.fetchAttestations(ctx, image)
	})
	if err != nil {
		return nil, fmt.Errorf("fetch attestations for %s: %w", image, err)
	}
	shared := v.([]artifact.Attestation)
	out := make([]artifact.Attestation, len(shared))
	for i, a := range shared {
		out[i] = cloneAttestation(a)
	}
	return out, nil
}

// Bundles returns the Sigstore bundles attached to image as OCI 1.1
// referrers, found through the referrers API or, on a registry without it,
// the referrers tag fallback. See the package documentation for how
// referrers are selected. None is an empty slice and a nil error. The
// returned values are the caller's own.
func (r *Registry) Bundles(ctx context.Context, image name.Digest) ([]artifact.Bundle, error) {
	v, err := r.bundles.do(ctx, image.String(), func(ctx context.Context) (any, error) {
		return r.fetchBundles(ctx, image)
	})
	if err != nil {
		return nil, fmt.Errorf("fetch bundles for %s: %w", image, err)
	}
	shared := v.([]artifact.Bundle)
	out := make([]artifact.Bundle, len(shared))
	for i, b := range shared {
		b.JSON = bytes.Clone(b.JSON)
		out[i] = b
	}
	return out, nil
}

func (r *Registry) fetchSignatures(ctx context.Context, image name.Digest) ([]artifact.Signature, error) {
	tag, err := SignatureTag(image)
	if err != nil {
		return nil, err
	}
	blobs, err := r.fetchTagged(ctx, image, tag, func(body []byte) ([]ocimaterial.Layer, error) {
		var skipped int
		layers, err := ocimaterial.ParseSignatureManifestCounted(body, r.limits, &skipped)
		r.skipped.Add(int64(skipped))
		return layers, err
	}, r.limits.PayloadBytes)
	if err != nil {
		return nil, err
	}
	sigs := make([]artifact.Signature, len(blobs))
	for i, b := range blobs {
		sigs[i] = ocimaterial.NewSignature(b.layer, b.blob, image.DigestStr(), b.origin)
	}
	return sigs, nil
}

func (r *Registry) fetchAttestations(ctx context.Context, image name.Digest) ([]artifact.Attestation, error) {
	tag, err := AttestationTag(image)
	if err != nil {
		return nil, err
	}
	blobs, err := r.fetchTagged(ctx, image, tag, func(body []byte) ([]ocimaterial.Layer, error) {
		var skipped int
		layers, err := ocimaterial.ParseAttestationManifestCounted(body, r.limits, &skipped)
		r.skipped.Add(int64(skipped))
		return layers, err
	}, r.limits.EnvelopeBytes)
	if err != nil {
		return nil, err
	}
	atts := make([]artifact.Attestation, len(blobs))
	for i, b := range blobs {
		atts[i] = ocimaterial.NewAttestation(b.layer, b.blob, image.DigestStr(), b.origin)
	}
	return atts, nil
}

// layerBlob is one layer of a manifest at one of cosign's tags, with its
// blob.
type layerBlob struct {
	layer  ocimaterial.Layer
	blob   []byte
	origin string
}

// fetchTagged reads the manifest at one of cosign's tags next to image and
// the blobs of its layers. The tag is asked only of hosts allowed to resolve
// tags ("pull" and "resolve" capabilities); blobs are fetched from hosts
// allowed to pull, each bounded by blobLimit. A tag that no host has is
// none: an empty slice and a nil error.
func (r *Registry) fetchTagged(ctx context.Context, image name.Digest, tag name.Tag,
	parse func([]byte) ([]ocimaterial.Layer, error), blobLimit int64) ([]layerBlob, error) {
	targets, err := r.targets(image.Context())
	if err != nil {
		return nil, err
	}
	resolvers := withCapability(targets, docker.HostCapabilityPull|docker.HostCapabilityResolve)
	if len(resolvers) == 0 {
		return nil, fmt.Errorf("no host of %s may resolve tags (capabilities pull and resolve)", image.RegistryStr())
	}
	var servedBy string
	layers, err := tryHosts(ctx, resolvers, func(ctx context.Context, t *target) ([]ocimaterial.Layer, error) {
		desc, err := t.puller.Get(withBodyLimit(ctx, r.limits.ManifestBytes), t.repo.Tag(tag.TagStr()))
		if err != nil {
			return nil, err
		}
		servedBy = t.host.Host
		return parse(desc.Manifest)
	})
	if errors.Is(err, ErrNotFound) {
		return []layerBlob{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", tag, err)
	}

	pullers := withCapability(targets, docker.HostCapabilityPull)
	got := make([]*layerBlob, len(layers))
	errs := make([]error, len(layers))
	var g errgroup.Group
	g.SetLimit(blobJobs)
	for i, l := range layers {
		g.Go(func() error {
			origin := tag.String() + " layer " + strconv.Itoa(i) + viaMirror(image, servedBy)
			blob, err := tryHosts(ctx, pullers, func(ctx context.Context, t *target) ([]byte, error) {
				return r.fetchBlob(ctx, t, l, blobLimit)
			})
			if err != nil {
				errs[i] = fmt.Errorf("%s: blob %s: %w", origin, l.Digest, err)
				return nil
			}
			got[i] = &layerBlob{layer: l, blob: blob, origin: origin}
			return nil
		})
	}
	_ = g.Wait()
	out, err := keepFetched(got, errs)
	if err == nil {
		r.skipped.Add(int64(len(layers) - len(out)))
	}
	return out, err
}

// keepFetched returns what was fetched, skipping the parts that failed (a
// blob that is missing, too large or does not match its digest must not
// hide a valid signature beside it). When every part failed, the first
// failure is the error, so that an unreachable registry stays
// ErrUnreachable.
func keepFetched[T any](got []*T, errs []error) ([]T, error) {
	out := make([]T, 0, len(got))
	var first error
	for i, g := range got {
		if g != nil {
			out = append(out, *g)
		} else if first == nil && errs[i] != nil {
			first = errs[i]
		}
	}
	if len(out) == 0 && first != nil {
		return nil, first
	}
	return out, nil
}

// fetchBlob reads one layer blob as stored (signature payloads, envelopes
// and bundles are not compressed, whatever their media type), bounded by
// limit and by the descriptor's size, and checks its size and digest.
func (r *Registry) fetchBlob(ctx context.Context, t *target, l ocimaterial.Layer, limit int64) ([]byte, error) {
	layer, err := t.puller.Layer(withBodyLimit(ctx, limit), t.repo.Digest(l.Digest.String()))
	if err != nil {
		return nil, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, l.Size+1))
	if err != nil {
		return nil, err
	}
	if err := ocimaterial.CheckBlob(l.Digest, l.Size, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (r *Registry) fetchDescription(ctx context.Context, image name.Digest) (artifact.Manifest, error) {
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("image digest: %w", err)
	}
	targets, err := r.targets(image.Context())
	if err != nil {
		return artifact.Manifest{}, err
	}
	pullers := withCapability(targets, docker.HostCapabilityPull)
	if len(pullers) == 0 {
		return artifact.Manifest{}, fmt.Errorf("no host of %s may pull (capability pull)", image.RegistryStr())
	}
	return tryHosts(ctx, pullers, func(ctx context.Context, t *target) (artifact.Manifest, error) {
		desc, err := t.puller.Get(withBodyLimit(ctx, r.limits.ManifestBytes), t.repo.Digest(h.String()))
		if err != nil {
			return artifact.Manifest{}, err
		}
		return ocimaterial.ParseDescription(h, string(desc.MediaType), desc.Manifest)
	})
}

// target is one host of a registry, as go-containerregistry addresses it.
type target struct {
	host   docker.RegistryHost
	repo   name.Repository
	tr     *hostTransport
	puller *remote.Puller
}

// targets maps the image's registry hosts onto go-containerregistry. The
// registry itself keeps the image's own name (so credentials are looked up
// as for the image); a mirror is named by its own host, so that credentials
// are looked up for the mirror, as containerd does. Credentials are
// resolved at every call; the puller of a host is kept across calls while
// the host's configuration and credentials stay the same, so that the
// registry is pinged and a token obtained once, not for every decision.
func (r *Registry) targets(image name.Repository) ([]*target, error) {
	if r.regconf != nil {
		return r.registriesConfTargets(image)
	}
	registry := image.RegistryStr()
	if registry == name.DefaultRegistry {
		registry = "docker.io" // the name containerd's certs.d uses
	}
	hosts, err := r.hosts.hosts(registry)
	if err != nil {
		return nil, err
	}
	targets := make([]*target, 0, len(hosts))
	for _, h := range hosts {
		repo := image
		ns := ""
		if isProxy(registry, h.Host) {
			ns = registry
			if repo, err = name.NewRepository(h.Host + "/" + image.RepositoryStr()); err != nil {
				return nil, fmt.Errorf("mirror %s: %w", h.Host, err)
			}
		}
		p, err := r.pullers.get(r, h, repo, ns)
		if err != nil {
			return nil, err
		}
		targets = append(targets, &target{host: h, repo: repo, tr: p.tr, puller: p.puller})
	}
	return targets, nil
}

// registriesConfTargets is targets from registries.conf: each source's
// repository is the one registries.conf rewrote the image's to, asked
// without containerd's "ns" parameter.
func (r *Registry) registriesConfTargets(image name.Repository) ([]*target, error) {
	sources, err := r.regconf.sources(image)
	if err != nil {
		return nil, err
	}
	targets := make([]*target, 0, len(sources))
	for _, s := range sources {
		p, err := r.pullers.get(r, s.host, s.repo, "")
		if err != nil {
			return nil, err
		}
		targets = append(targets, &target{host: s.host, repo: s.repo, tr: p.tr, puller: p.puller})
	}
	return targets, nil
}

// maxPullers bounds the pullers kept; past it they are made anew.
const maxPullers = 256

// pullerTTL bounds how long a puller (and what it learned: tokens, the
// host's API support) is kept.
const pullerTTL = 10 * time.Minute

type hostPuller struct {
	tr      *hostTransport
	puller  *remote.Puller
	created time.Time
}

// pullerCache keeps one puller per host, host configuration and
// credentials.
type pullerCache struct {
	mu sync.Mutex
	m  map[string]*hostPuller
}

func (c *pullerCache) get(r *Registry, h docker.RegistryHost, repo name.Repository, ns string) (*hostPuller, error) {
	auth, err := r.keychain.Resolve(repo) // the repository: credential providers match whole image names
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	cfg, err := auth.Authorization()
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	sum := sha256.New()
	for _, v := range []string{repo.RegistryStr(), h.Scheme, h.Host, h.Path, ns, fmt.Sprintf("%p", h.Client),
		cfg.Username, cfg.Password, cfg.Auth, cfg.IdentityToken, cfg.RegistryToken} {
		sum.Write([]byte(v))
		sum.Write([]byte{0})
	}
	key := string(sum.Sum(nil))
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.m[key]; ok && time.Since(p.created) < pullerTTL {
		return p, nil
	}
	base := http.DefaultTransport
	if h.Client != nil && h.Client.Transport != nil {
		base = h.Client.Transport
	}
	tr := &hostTransport{
		from:    repo.RegistryStr(),
		scheme:  h.Scheme,
		host:    h.Host,
		path:    h.Path,
		header:  h.Header,
		ns:      ns,
		timeout: r.timeout,
		limit:   r.limits.ManifestBytes,
		base:    base,
		state:   &hostState{},
		observe: r.observe,
		replies: &r.replies,
	}
	puller, err := remote.NewPuller(
		remote.WithTransport(tr),
		remote.WithAuth(auth),
		// The next host is the retry; a backoff would eat the
		// runtime's request deadline.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
		remote.WithUserAgent("sealgate"),
	)
	if err != nil {
		return nil, err
	}
	if c.m == nil || len(c.m) >= maxPullers {
		c.m = make(map[string]*hostPuller)
	}
	p := &hostPuller{tr: tr, puller: puller, created: time.Now()}
	c.m[key] = p
	return p, nil
}

func withCapability(targets []*target, caps docker.HostCapabilities) []*target {
	var out []*target
	for _, t := range targets {
		if t.host.Capabilities.Has(caps) {
			out = append(out, t)
		}
	}
	return out
}

// tryHosts asks each target in order until one answers, as containerd does:
// not found, unreachable and failing hosts all fall through to the next.
// When none answers, summarize says why.
func tryHosts[T any](ctx context.Context, targets []*target, fn func(context.Context, *target) (T, error)) (T, error) {
	var (
		zero  T
		errs  hostErrors
		kinds []outcome
	)
	for _, t := range targets {
		v, err := fn(ctx, t)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.host.Host, err))
		kinds = append(kinds, classify(err))
	}
	return zero, summarize(errs, kinds)
}

func cloneSignature(s artifact.Signature) artifact.Signature {
	s.Payload = bytes.Clone(s.Payload)
	s.Signature = bytes.Clone(s.Signature)
	s.Certificate = bytes.Clone(s.Certificate)
	s.Chain = bytes.Clone(s.Chain)
	s.RekorBundle = bytes.Clone(s.RekorBundle)
	s.Timestamp = bytes.Clone(s.Timestamp)
	return s
}

func cloneAttestation(a artifact.Attestation) artifact.Attestation {
	a.Envelope = bytes.Clone(a.Envelope)
	a.Certificate = bytes.Clone(a.Certificate)
	a.Chain = bytes.Clone(a.Chain)
	a.RekorBundle = bytes.Clone(a.RekorBundle)
	a.Timestamp = bytes.Clone(a.Timestamp)
	return a
}

// viaMirror names the host that served image's material when it is not
// the image's own registry (a mirror), for the origin of what it served.
func viaMirror(image name.Digest, host string) string {
	if host == "" || !isProxy(image.RegistryStr(), host) {
		return ""
	}
	return " (served by mirror " + host + ")"
}

// Resolve returns the digest tag names now, asking the hosts containerd
// would ask (mirrors first, hosts allowed to resolve). The shell uses it
// to verify by tag; the daemon only to find the index a tag names when the
// runtime recorded a platform manifest pulled through it (CRI-O), which
// then vouches for that exact digest or not: a tag never chooses what is
// decided. A tag no host has is an error wrapping ErrNotFound.
func (r *Registry) Resolve(ctx context.Context, tag name.Tag) (string, error) {
	targets, err := r.targets(tag.Context())
	if err != nil {
		return "", err
	}
	resolvers := withCapability(targets, docker.HostCapabilityResolve)
	if len(resolvers) == 0 {
		return "", fmt.Errorf("no host of %s may resolve tags (capability resolve)", tag.RegistryStr())
	}
	d, err := tryHosts(ctx, resolvers, func(ctx context.Context, t *target) (string, error) {
		desc, err := t.puller.Head(ctx, t.repo.Tag(tag.TagStr()))
		if err != nil {
			return "", err
		}
		return desc.Digest.String(), nil
	})
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", tag, err)
	}
	return d, nil
}
