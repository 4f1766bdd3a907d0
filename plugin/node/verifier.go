package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sealgate/sealgate/plugin/check"
	"github.com/sealgate/sealgate/plugin/checkproc"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
)

// sourceConfig is what the verifier process needs of a Config to build the
// sources as the daemon would.
type sourceConfig struct {
	HostsDir                 string        `json:"hostsDir,omitempty"`
	RegistryCredentials      string        `json:"registryCredentials,omitempty"`
	RegistryAuthFile         string        `json:"registryAuthFile,omitempty"`
	CRIOConfig               string        `json:"crioConfig,omitempty"`
	CRIOConfigDir            string        `json:"crioConfigDir,omitempty"`
	CredentialProviderConfig string        `json:"credentialProviderConfig,omitempty"`
	CredentialProviderBinDir string        `json:"credentialProviderBinDir,omitempty"`
	RegistryTimeout          time.Duration `json:"registryTimeout,omitempty"`
	BundleStore              string        `json:"bundleStore,omitempty"`
	RegistriesConf           string        `json:"registriesConf,omitempty"`
	RegistriesConfDir        string        `json:"registriesConfDir,omitempty"`
	ContainersCertsDir       string        `json:"containersCertsDir,omitempty"`
}

func (c Config) sources() sourceConfig {
	return sourceConfig{HostsDir: c.HostsDir, RegistryCredentials: c.RegistryCredentials, RegistryAuthFile: c.RegistryAuthFile,
		CRIOConfig: c.CRIOConfig, CRIOConfigDir: c.CRIOConfigDir, CredentialProviderConfig: c.CredentialProviderConfig,
		CredentialProviderBinDir: c.CredentialProviderBinDir, RegistryTimeout: c.RegistryTimeout, BundleStore: c.BundleStore,
		RegistriesConf: c.RegistriesConf, RegistriesConfDir: c.RegistriesConfDir, ContainersCertsDir: c.ContainersCertsDir}
}

func (s sourceConfig) config() Config {
	return Config{HostsDir: s.HostsDir, RegistryCredentials: s.RegistryCredentials, RegistryAuthFile: s.RegistryAuthFile,
		CRIOConfig: s.CRIOConfig, CRIOConfigDir: s.CRIOConfigDir, CredentialProviderConfig: s.CredentialProviderConfig,
		CredentialProviderBinDir: s.CredentialProviderBinDir, RegistryTimeout: s.RegistryTimeout, BundleStore: s.BundleStore,
		RegistriesConf: s.RegistriesConf, RegistriesConfDir: s.RegistriesConfDir, ContainersCertsDir: s.ContainersCertsDir}
}

// checker is what checks what no verdict decides under p: the verifier
// process when the configuration names one, else this process.
func (n *Node) checker(p *policy.Policy) (decision.Checker, error) {
	if n.cfg.Verifier == "" {
		return check.New(p, n.src)
	}
	src, err := json.Marshal(n.cfg.sources())
	if err != nil {
		return nil, err
	}
	opts := []checkproc.ClientOption{checkproc.WithObserver(n.observeRequest), checkproc.WithStderr(os.Stderr)}
	if n.cfg.VerifierIdle > 0 {
		opts = append(opts, checkproc.WithIdle(n.cfg.VerifierIdle))
	}
	return checkproc.NewClient([]string{n.cfg.Verifier, "verifier"}, checkproc.InitFor(p, src), opts...)
}

// ServeVerifier is the verifier process (`sealgate verifier`): it builds
// the sources and the checker from what the daemon sends on r and answers
// its checks on w until r ends.
func ServeVerifier(ctx context.Context, r io.Reader, w io.Writer) error {
	return checkproc.Serve(ctx, r, w, func(in checkproc.Init, p *policy.Policy, observe checkproc.Observer) (decision.Checker, error) {
		var sc sourceConfig
		if len(in.Sources) > 0 {
			if err := json.Unmarshal(in.Sources, &sc); err != nil {
				return nil, fmt.Errorf("sources configuration: %w", err)
			}
		}
		cfg := sc.config()
		cfg.requestObserver = source.RequestObserver(observe)
		src, err := NewSource(cfg)
		if err != nil {
			return nil, err
		}
		return check.New(p, src)
	})
}
