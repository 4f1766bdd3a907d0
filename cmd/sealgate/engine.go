package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
)

// engineFlags are the flags shared by `run` and `verify`, so that both build
// the very same decision engine.
type engineFlags struct {
	policy          string
	hostsDir        string
	registryTimeout time.Duration
	cacheSize       int
	bundleStore     string
}

func (f *engineFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.policy, "policy", "", "policy file (default: the trust store's, /etc/sealgate/policy.yaml)")
	fs.StringVar(&f.hostsDir, "registry-hosts-dir", "/etc/containerd/certs.d", "containerd's registry host configuration (certs.d/<host>/hosts.toml): mirrors, plain-HTTP hosts, CAs")
	fs.DurationVar(&f.registryTimeout, "registry-timeout", 5*time.Second, "timeout of one registry request")
	fs.IntVar(&f.cacheSize, "cache-size", cache.DefaultMaxEntries, "verdicts kept in memory")
	fs.StringVar(&f.bundleStore, "bundle-store", source.DefaultLocalDir, "local bundle store (sealgate bundle import), asked before the registry; empty disables")
}

// build loads the policy and builds the engine. A policy error is returned
// as is: it names the file and line.
func (f *engineFlags) build(opts ...decision.Option) (*decision.Engine, error) {
	p, err := policy.Load(f.policy)
	if err != nil {
		return nil, err
	}
	return f.buildWith(p, opts...)
}

// buildWith builds the engine for a policy already parsed (on a sealed
// node, from the bytes checked against the TPM).
func (f *engineFlags) buildWith(p *policy.Policy, opts ...decision.Option) (*decision.Engine, error) {
	reg, err := source.NewRegistry(source.WithHostsDir(f.hostsDir), source.WithTimeout(f.registryTimeout))
	if err != nil {
		return nil, fmt.Errorf("registry source: %w", err)
	}
	var src source.Source = reg
	if f.bundleStore != "" {
		// The local bundle store (sealgate bundle import) first: an
		// air-gapped node finds its signatures there; everything from it
		// is verified like registry material.
		local, err := source.NewLocal(f.bundleStore)
		if err != nil {
			return nil, err
		}
		if src, err = source.NewMulti(local, reg); err != nil {
			return nil, err
		}
	}
	return decision.New(p, src, append([]decision.Option{decision.WithCache(cache.NewMemory(f.cacheSize))}, opts...)...)
}
