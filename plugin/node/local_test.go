package node

import (
	"github.com/sealgate/sealgate/plugin/check"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
)

// local gives cfg the in-process checker over the registries of its hosts
// folder, as plugin/node/verifier.Local does (which imports this package,
// so its tests cannot use it).
func local(cfg Config) Config {
	cfg.Local = func(cfg Config, p *policy.Policy, observe RequestObserver) (decision.Checker, error) {
		reg, err := source.NewRegistry(source.WithHostsDir(cfg.HostsDir), source.WithTimeout(DefaultRegistryTimeout),
			source.WithRequestObserver(source.RequestObserver(observe)))
		if err != nil {
			return nil, err
		}
		return check.New(p, reg)
	}
	return cfg
}
