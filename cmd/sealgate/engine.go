package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/sealgate/sealgate/plugin/bundlestore"
	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/node"
	"github.com/sealgate/sealgate/plugin/node/verifier"
	"github.com/sealgate/sealgate/plugin/source"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/tpm"
)

// nodeFlags are the flags every command that builds a node shares, so that
// `run`, `verify` and `cache` open the very same node.
type nodeFlags struct{ cfg node.Config }

// registerAnchor registers where the trust store, the TPM and the verdicts
// are.
func (f *nodeFlags) registerAnchor(fs *pflag.FlagSet, stateUsage string) {
	f.cfg.Local = verifier.Local // this binary verifies in its own process
	fs.StringVar(&f.cfg.TrustDir, "trust-dir", trust.DefaultDir, "the sealed trust store: policy.yaml and the keys and roots it names (sealgate trust seal)")
	fs.StringVar(&f.cfg.TPM, "tpm", tpm.DefaultDevice, "the TPM: a device (/dev/tpmrm0) or swtpm:HOST:PORT")
	fs.StringVar(&f.cfg.StateDir, "state-dir", node.DefaultStateDir, stateUsage)
}

// registerEngine registers what the decision engine is built from.
func (f *nodeFlags) registerEngine(fs *pflag.FlagSet, noTPMUsage string) {
	fs.BoolVar(&f.cfg.InsecureNoTPM, "insecure-no-tpm", false, noTPMUsage)
	fs.StringVar(&f.cfg.PolicyFile, "policy", "", "policy file, unchecked (only without a TPM; default: the trust store's policy.yaml)")
	fs.StringVar(&f.cfg.HostsDir, "registry-hosts-dir", source.DefaultHostsDir, "containerd's registry host configuration (certs.d/<host>/hosts.toml): mirrors, plain-HTTP hosts, CAs")
	fs.StringVar(&f.cfg.RegistriesConf, "registries-conf", "", "CRI-O's registries.conf (/etc/containers/registries.conf): reach registries as CRI-O does (mirrors, insecure, blocked) instead of through --registry-hosts-dir")
	fs.StringVar(&f.cfg.RegistriesConfDir, "registries-conf-dir", "/etc/containers/registries.conf.d", "drop-ins of --registries-conf")
	fs.StringVar(&f.cfg.ContainersCertsDir, "containers-certs-dir", "/etc/containers/certs.d", "TLS files per registry host (<host>/ca.crt, client .cert/.key) with --registries-conf")
	fs.StringVar(&f.cfg.RegistryCredentials, "registry-credentials", node.DefaultRegistryCredentials, "registry credentials in docker's config.json format, read when the file exists")
	fs.StringVar(&f.cfg.RegistryAuthFile, "registry-auth-file", "", "registry credentials in containers-auth.json format (podman's auth.json; keys may name a repository or namespace), read when the file exists")
	fs.StringVar(&f.cfg.CRIOConfig, "crio-config", node.DefaultCRIOConfig, "CRI-O's crio.conf: its global_auth_file holds credentials sealgate reads too, found again at every use; empty: not read")
	fs.StringVar(&f.cfg.CRIOConfigDir, "crio-config-dir", node.DefaultCRIOConfigDir, "CRI-O's drop-ins of --crio-config")
	fs.StringVar(&f.cfg.CredentialProviderConfig, "image-credential-provider-config", "", "kubelet's CredentialProviderConfig file: exec plugins that return registry credentials")
	fs.StringVar(&f.cfg.CredentialProviderBinDir, "image-credential-provider-bin-dir", "", "where the credential provider plugins are (kubelet's --image-credential-provider-bin-dir)")
	fs.DurationVar(&f.cfg.RegistryTimeout, "registry-timeout", source.DefaultTimeout, "timeout of one registry request")
	fs.IntVar(&f.cfg.CacheSize, "cache-size", cache.DefaultMaxEntries, "verdicts kept in memory")
	fs.StringVar(&f.cfg.BundleStore, "bundle-store", bundlestore.DefaultDir, "local bundle store (sealgate bundle import), asked before the registry; empty disables")
	fs.DurationVar(&f.cfg.RevalidateAfter, "revalidate-after", decision.DefaultRevalidateAfter, "how long a verified verdict decides before the sources are asked again")
	fs.Var(denialMemory{&f.cfg.DenialMemory}, "remember-denials", "how long a denial from verification (signatures found wanting, or none) decides again without asking the registry; 0 turns it off (a re-seal forgets them; a registry that could not be reached is never remembered)")
}

// denialMemory is --remember-denials: 0 on the command line is off, which
// node.Config writes as negative.
type denialMemory struct{ d *time.Duration }

func (m denialMemory) String() string {
	if m.d == nil || *m.d == 0 {
		return decision.DefaultDenialMemory.String()
	}
	if *m.d < 0 {
		return "0s"
	}
	return m.d.String()
}

func (m denialMemory) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return err
	case d < 0:
		return fmt.Errorf("must not be negative")
	case d == 0:
		d = -1
	}
	*m.d = d
	return nil
}

func (denialMemory) Type() string { return "duration" }

// exitFor maps a node error to an exit status: 2 for what configuration
// fixes, 1 for a failure of the node.
func exitFor(err error) int {
	if errors.Is(err, node.ErrConfig) {
		return exitUsage
	}
	return exitFailed
}

// deprecatedAlias registers old as another name of the string flag that
// sets target, hidden from help, saying on stderr, when it is used, which
// name to use.
func deprecatedAlias(fs *pflag.FlagSet, old, current string, target *string, stderr io.Writer) {
	fs.Func(old, "deprecated: use --"+current, func(v string) error {
		fmt.Fprintf(stderr, "sealgate: --%s is deprecated; use --%s\n", old, current)
		*target = v
		return nil
	})
	_ = fs.MarkHidden(old)
}
