package node

import (
	"fmt"

	"github.com/sealgate/sealgate/plugin/bundlestore"
	"github.com/sealgate/sealgate/plugin/source"
)

// NewSource builds the sources a node fetches signature material from: the
// local bundle store (sealgate bundle import) first, when configured, then
// the registries as containerd's host configuration says. Everything from
// either is verified alike. `sealgate bundle export` fetches through the
// same registry source, so what it exports is what the node would see.
func NewSource(cfg Config) (source.Source, error) {
	reg, err := NewRegistry(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.BundleStore == "" {
		return reg, nil
	}
	local, err := bundlestore.New(cfg.BundleStore)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return source.NewMulti(local, reg)
}

// NewRegistry builds the registry source as the node uses it.
func NewRegistry(cfg Config) (*source.Registry, error) {
	hosts := cfg.HostsDir
	if hosts == "" {
		hosts = DefaultHostsDir
	}
	timeout := cfg.RegistryTimeout
	if timeout <= 0 {
		timeout = source.DefaultTimeout
	}
	reg, err := source.NewRegistry(source.WithHostsDir(hosts), source.WithTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("%w: registry source: %w", ErrConfig, err)
	}
	return reg, nil
}
