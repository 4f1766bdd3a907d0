package verifier

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/sealgate/sealgate/plugin/bundlestore"
	"github.com/sealgate/sealgate/plugin/credentials"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/source"
)

// NewSource builds the sources a node fetches signature material from: the
// local bundle store (sealgate bundle import) first, when configured, then
// the registries as containerd's host configuration says. Everything from
// either is verified alike. `sealgate bundle export` fetches through the
// same registry source, so what it exports is what the node would see.
func NewSource(cfg node.Config, opts ...source.Option) (source.Source, error) {
	reg, err := NewRegistry(cfg, opts...)
	if err != nil {
		return nil, err
	}
	if cfg.BundleStore == "" {
		return reg, nil
	}
	local, err := bundlestore.New(cfg.BundleStore)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", node.ErrConfig, err)
	}
	return source.NewMulti(local, reg)
}

// NewRegistry builds the registry source as the node uses it.
// extra options come after those of the configuration (a request
// observer).
func NewRegistry(cfg node.Config, extra ...source.Option) (*source.Registry, error) {
	hosts := cfg.HostsDir
	if hosts == "" {
		hosts = node.DefaultHostsDir
	}
	timeout := cfg.RegistryTimeout
	if timeout <= 0 {
		timeout = source.DefaultTimeout
	}
	keychain, err := Keychain(cfg)
	if err != nil {
		return nil, err
	}
	opts := []source.Option{source.WithHostsDir(hosts), source.WithTimeout(timeout), source.WithKeychain(keychain)}
	if cfg.RegistriesConf != "" {
		opts = append(opts, source.WithRegistriesConf(cfg.RegistriesConf, cfg.RegistriesConfDir, cfg.ContainersCertsDir))
	}
	reg, err := source.NewRegistry(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("%w: registry source: %w", node.ErrConfig, err)
	}
	return reg, nil
}

// Keychain is where the node's registry credentials come from, in order:
// the credentials file, the containers auth file, the one CRI-O pulls
// with, kubelet's credential provider plugins, then the process's own
// docker config (DOCKER_CONFIG, ~/.docker/config.json).
func Keychain(cfg node.Config) (authn.Keychain, error) {
	var chain []authn.Keychain
	if cfg.RegistryCredentials != "" {
		chain = append(chain, credentials.DockerConfig{Path: cfg.RegistryCredentials})
	}
	if cfg.RegistryAuthFile != "" {
		chain = append(chain, credentials.ContainersAuth{Path: cfg.RegistryAuthFile, RegistriesConf: cfg.RegistriesConf, RegistriesConfDir: cfg.RegistriesConfDir})
	}
	if cfg.CRIOConfig != "" {
		chain = append(chain, credentials.CRIOAuth{Config: cfg.CRIOConfig, ConfigDir: cfg.CRIOConfigDir, RegistriesConf: cfg.RegistriesConf, RegistriesConfDir: cfg.RegistriesConfDir})
	}
	if cfg.CredentialProviderConfig != "" {
		if cfg.CredentialProviderBinDir == "" {
			return nil, fmt.Errorf("%w: a credential provider config needs the plugins' bin dir", node.ErrConfig)
		}
		p, err := credentials.LoadProviders(cfg.CredentialProviderConfig, cfg.CredentialProviderBinDir)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", node.ErrConfig, err)
		}
		chain = append(chain, p)
	}
	return authn.NewMultiKeychain(append(chain, authn.DefaultKeychain)...), nil
}
