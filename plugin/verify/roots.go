package verify

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// maxTrustedRootSize bounds a trusted_root.json. The public-good root is
// about 10 KiB; a file near this size is not a trusted root.
const maxTrustedRootSize = 4 << 20

type options struct {
	rootFiles []string
	material  []root.TrustedMaterial
}

// Option configures a Verifier. Options are fixed when the Verifier is
// built (trusted roots, like sigstore-go's verifier configuration); the
// requirements come with each call.
type Option func(*options) error

// WithTrustedRootFiles names Sigstore trusted_root.json files (Fulcio CAs,
// Rekor logs, CT logs, TSAs with their validity windows), as cosign and
// sigstore-go read them. Each is parsed once, in New; a file that cannot be
// read or parsed makes New fail with an error naming it. Several roots are
// combined: a CA, log or TSA of any of them is trusted.
func WithTrustedRootFiles(paths ...string) Option {
	return func(o *options) error {
		for _, p := range paths {
			if p == "" {
				return errors.New("trusted root: empty path")
			}
		}
		o.rootFiles = append(o.rootFiles, paths...)
		return nil
	}
}

// WithTrustedRootJSON adds a trusted_root.json given as bytes, named for
// messages: the daemon passes the content it checked against the TPM, so
// that the root is never read from disk again after the check.
func WithTrustedRootJSON(name string, data []byte) Option {
	return func(o *options) error {
		if len(data) == 0 {
			return fmt.Errorf("trusted root %s: empty", name)
		}
		tr, err := root.NewTrustedRootFromJSON(data)
		if err != nil {
			return fmt.Errorf("trusted root %s: %w", name, err)
		}
		o.material = append(o.material, tr)
		return nil
	}
}

// WithTrustedMaterial adds trusted material built in memory, such as
// sigstore-go's testing VirtualSigstore or a root.TrustedRoot a caller has
// already loaded. It is combined with the trusted root files.
func WithTrustedMaterial(tm root.TrustedMaterial) Option {
	return func(o *options) error {
		if tm == nil {
			return errors.New("trusted material: nil")
		}
		o.material = append(o.material, tm)
		return nil
	}
}

// loadRoots parses the configured roots once and flattens them.
func loadRoots(o options) (*material, error) {
	var all root.TrustedMaterialCollection
	for _, p := range o.rootFiles {
		tr, err := readTrustedRoot(p)
		if err != nil {
			return nil, err
		}
		all = append(all, tr)
	}
	all = append(all, o.material...)
	return flatten(all), nil
}

func readTrustedRoot(path string) (*root.TrustedRoot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trusted root %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTrustedRootSize+1))
	if err != nil {
		return nil, fmt.Errorf("trusted root %s: %w", path, err)
	}
	if len(b) > maxTrustedRootSize {
		return nil, fmt.Errorf("trusted root %s: larger than %d bytes", path, maxTrustedRootSize)
	}
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("trusted root %s: %w", path, err)
	}
	return tr, nil
}

// material is trusted material whose CAs, logs and TSAs were collected once
// from every root, so that a decision does not rebuild the merged maps
// (root.TrustedMaterialCollection merges on every call, and sigstore-go
// asks for the Rekor logs several times per entry).
type material struct {
	tsas  []root.TimestampingAuthority
	cas   []root.CertificateAuthority
	rekor map[string]*root.TransparencyLog
	ct    map[string]*root.TransparencyLog
	keys  root.TrustedMaterial // answers PublicKeyVerifier
}

var _ root.TrustedMaterial = (*material)(nil)

func flatten(tm root.TrustedMaterialCollection) *material {
	m := &material{
		tsas:  tm.TimestampingAuthorities(),
		cas:   tm.FulcioCertificateAuthorities(),
		rekor: tm.RekorLogs(),
		ct:    tm.CTLogs(),
		keys:  tm,
	}
	return m
}

func (m *material) TimestampingAuthorities() []root.TimestampingAuthority { return m.tsas }
func (m *material) FulcioCertificateAuthorities() []root.CertificateAuthority {
	return m.cas
}
func (m *material) RekorLogs() map[string]*root.TransparencyLog { return m.rekor }
func (m *material) CTLogs() map[string]*root.TransparencyLog    { return m.ct }
func (m *material) PublicKeyVerifier(id string) (root.TimeConstrainedVerifier, error) {
	return m.keys.PublicKeyVerifier(id)
}

// withRekor is trusted material whose Rekor logs are replaced, for a key
// authority that names its own Rekor key (rekorKey): only that log may
// vouch for its signatures.
type withRekor struct {
	root.TrustedMaterial
	logs map[string]*root.TransparencyLog
}

func (w withRekor) RekorLogs() map[string]*root.TransparencyLog { return w.logs }
