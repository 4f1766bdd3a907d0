// Package node is sealgate's composition root: from one Config it opens the
// TPM, reads the sealed trust store once, builds the policy, the sources and
// the decision engine from the bytes that were checked, and runs the
// long-lived parts (the runtime connection, the runtime gate, the warmer,
// the pull watcher) with one owner.
//
// Every command that decides builds a Node (run, verify) or opens its parts
// the same way (cache, bundle), so that a decision made in the shell is made
// exactly as the daemon makes it: same anchoring, same offline cache, same
// sources.
package node

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/trust"
	"github.com/sealgate/sealgate/runtimegate"
	"github.com/sealgate/sealgate/tpm"
)

// Access says what opening a node may change.
type Access int

const (
	// Daemon: measure the trust store into its PCR, persist verdicts,
	// keep the TPM clock mark (sealgate run).
	Daemon Access = iota
	// Inspect: read everything, change nothing (sealgate verify and cache
	// list beside a running daemon).
	Inspect
	// Maintain: write the verdict store, nothing else (sealgate cache
	// purge, with the daemon stopped).
	Maintain
)

// ErrConfig is wrapped by every error that a change of configuration (a
// flag, the policy, the trust store) fixes, as opposed to a failure of the
// node (a TPM that does not answer, a disk error).
var ErrConfig = errors.New("configuration")

// Config is everything a node is built from; cmd/sealgate fills it from
// flags. It travels as JSON to the daemon binary that sealgate run
// executes and on to the verifier process, which build their parts from it
// alike. The zero values of the optional fields are the defaults below.
type Config struct {
	// TrustDir is the sealed trust store (trust.DefaultDir).
	TrustDir string
	// TPM is the TPM: a device or swtpm:HOST:PORT (tpm.DefaultDevice).
	TPM string
	// StateDir holds the persisted verdicts and the clock mark.
	StateDir string
	// InsecureNoTPM runs without a TPM: the policy is read as it is on disk
	// (PolicyFile, else the trust store's), unchecked, and nothing is
	// persisted.
	InsecureNoTPM bool
	// PolicyFile is a policy to use unchecked; only with InsecureNoTPM.
	PolicyFile string
	// PolicyBytes, when set, is that policy's content (a policy written
	// from command-line flags); PolicyFile then only names it.
	PolicyBytes []byte
	// Access says what opening may change.
	Access Access

	// HostsDir is containerd's registry host configuration.
	HostsDir string
	// RegistryCredentials is a docker config file (config.json format)
	// with registry credentials; a file that does not exist holds none.
	RegistryCredentials string
	// RegistryAuthFile is a containers-auth.json file (podman's auth.json,
	// CRI-O's global_auth_file format); a file that does not exist holds
	// none.
	RegistryAuthFile string
	// CRIOConfig and CRIOConfigDir are CRI-O's crio.conf and drop-ins:
	// the auth file CRI-O pulls with (global_auth_file, or containers'
	// default when unset) is read too, found again at every use, so that
	// one file configures both. Empty CRIOConfig: not read.
	CRIOConfig, CRIOConfigDir string
	// CredentialProviderConfig and CredentialProviderBinDir are kubelet's
	// --image-credential-provider-config and -bin-dir: exec plugins that
	// return registry credentials. Empty: none.
	CredentialProviderConfig string
	CredentialProviderBinDir string
	// RegistryTimeout bounds one registry request.
	RegistryTimeout time.Duration
	// CacheSize is the number of verdicts kept in memory.
	CacheSize int
	// BundleStore is the local bundle store asked before the registry;
	// empty disables it.
	BundleStore string
	// RevalidateAfter is how long a verified verdict decides before the
	// sources are asked again.
	RevalidateAfter time.Duration
	// DenialMemory is how long a denial that came from verification
	// decides again without asking the sources: zero is the default
	// (decision.DefaultDenialMemory), negative turns it off.
	DenialMemory time.Duration

	// MetricsAddress is where Run serves /metrics, /healthz, /readyz and
	// /status: a unix socket path, or tcp:HOST:PORT; empty is
	// metrics.sock beside GateSocket (none without the gate), "none" none.
	MetricsAddress string
	// Version is reported in sealgate_build_info.
	Version string

	// Verifier, when set, is the sealgate binary whose `verifier` command
	// checks what no verdict decides, in a process of its own started when
	// needed and stopped after VerifierIdle (checkproc.DefaultIdle when 0)
	// without a check; empty checks in this process, with Local.
	Verifier     string
	VerifierIdle time.Duration
	// Local checks in this process when there is no Verifier; nil in a
	// binary that does not link the verifier.
	Local LocalChecker `json:"-"`

	// DecisionLog is where Run writes every decision, hash-chained
	// (plugin/decisionlog): empty is StateDir/decisions.log, "none" none.
	DecisionLog string

	// Runtime side, used by Run.
	NRISocket   string
	PluginName  string
	PluginIndex string
	Deadline    time.Duration
	// ContainerdAddress is containerd's socket for sandbox images and pull
	// events; empty disables both.
	ContainerdAddress   string
	ContainerdNamespace string
	// CRIOAddress is CRI-O's CRI socket, asked for images (CRI-O's NRI
	// sends none) and its sandbox image; empty disables. Which of the two
	// is used is what the runtime says it is when it connects.
	CRIOAddress string
	// ImagePoll is how often CRI-O's image list is read for new images to
	// verify ahead (DefaultImagePoll when 0).
	ImagePoll time.Duration
	// RegistriesConf, when set, is CRI-O's registries.conf: registries
	// are reached as CRI-O reaches them (mirrors, insecure and blocked
	// registries, with the drop-ins of RegistriesConfDir and the TLS files
	// of ContainersCertsDir) instead of through containerd's HostsDir.
	RegistriesConf     string
	RegistriesConfDir  string
	ContainersCertsDir string
	// GateSocket is the runtime gate's socket; empty disables the gate.
	GateSocket string
	// LaunchedByRuntime: the runtime started the process and handed over
	// one connection, which cannot be redialled.
	LaunchedByRuntime bool

	// ReloadRequests asks Run to reload the trust store (cmd/sealgate
	// sends SIGHUP here); nil: only a change of the sealed files, or the
	// runtime gate's reload request, reloads.
	ReloadRequests <-chan struct{} `json:"-"`

	// Logger receives what the node says; nil discards.
	Logger *slog.Logger `json:"-"`
}

// Defaults a node uses on a production host.
const (
	DefaultStateDir          = "/var/lib/sealgate"
	DefaultNRISocket         = "/var/run/nri/nri.sock"
	DefaultContainerdAddress = "/run/containerd/containerd.sock"
	// DefaultImagePoll is how often CRI-O's images are listed.
	DefaultImagePoll           = 10 * time.Second
	DefaultContainerdNamespace = "k8s.io"
	// DefaultHostsDir is containerd's registry host configuration
	// (source.DefaultHostsDir).
	DefaultHostsDir = "/etc/containerd/certs.d"
	// DefaultBundleStore is where sealgate bundle import writes
	// (bundlestore.DefaultDir).
	DefaultBundleStore = "/var/lib/sealgate/bundles"
	// DefaultRegistryTimeout bounds one registry request
	// (source.DefaultTimeout).
	DefaultRegistryTimeout = 5 * time.Second
	// DefaultRegistryCredentials is read when it exists: the unit's
	// hardening hides home directories, so ~/.docker/config.json is not.
	DefaultRegistryCredentials = "/etc/sealgate/registry-credentials.json"
	// DefaultCRIOConfig and DefaultCRIOConfigDir are where CRI-O reads
	// its configuration.
	DefaultCRIOConfig    = "/etc/crio/crio.conf"
	DefaultCRIOConfigDir = "/etc/crio/crio.conf.d"
)

// withDefaults fills what is unset and rejects what cannot work.
func (c Config) withDefaults() (Config, error) {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&c.TrustDir, trust.DefaultDir)
	set(&c.TPM, tpm.DefaultDevice)
	set(&c.StateDir, DefaultStateDir)
	set(&c.NRISocket, DefaultNRISocket)
	set(&c.PluginName, plugin.DefaultName)
	set(&c.PluginIndex, plugin.DefaultIndex)
	if c.Verifier != "" && !filepath.IsAbs(c.Verifier) {
		// Never looked up in PATH: the verifier's answers are trusted.
		return c, fmt.Errorf("%w: the verifier %q must be an absolute path", ErrConfig, c.Verifier)
	}
	if c.VerifierIdle < 0 {
		return c, fmt.Errorf("%w: verifier idle time %s must not be negative", ErrConfig, c.VerifierIdle)
	}
	if c.RegistryTimeout == 0 {
		c.RegistryTimeout = DefaultRegistryTimeout
	}
	if c.CacheSize == 0 {
		c.CacheSize = cache.DefaultMaxEntries
	}
	if c.RevalidateAfter == 0 {
		c.RevalidateAfter = decision.DefaultRevalidateAfter
	}
	if c.Deadline == 0 {
		c.Deadline = plugin.DefaultDeadline
	}
	if c.DenialMemory == 0 {
		c.DenialMemory = decision.DefaultDenialMemory
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case (c.PolicyFile != "" || c.PolicyBytes != nil) && !c.InsecureNoTPM:
		return c, fmt.Errorf("%w: with a TPM the policy is the sealed trust store's (%s/%s); a policy file is only for --insecure-no-tpm", ErrConfig, c.TrustDir, trust.PolicyName)
	case c.RegistryTimeout < 0, c.Deadline < 0, c.RevalidateAfter < 0:
		return c, fmt.Errorf("%w: durations must be positive", ErrConfig)
	case c.CacheSize < 1:
		return c, fmt.Errorf("%w: the verdict cache holds at least one verdict", ErrConfig)
	case c.Access < Daemon || c.Access > Maintain:
		return c, fmt.Errorf("%w: unknown access %d", ErrConfig, c.Access)
	}
	return c, nil
}

// gateEnabled says whether Run serves the runtime gate.
func (c Config) gateEnabled() bool { return c.GateSocket != "" }

// DefaultGateSocket is where sealgate-runc asks.
const DefaultGateSocket = runtimegate.DefaultSocket
