// Package credentials finds the registry credentials a node already uses
// to pull: a docker config file (the format of ~/.docker/config.json, given
// to the daemon by path so that the unit's hardening need not expose a home
// directory) and kubelet's credential provider plugins (the
// CredentialProviderConfig file and the exec plugins a cloud node already
// runs for the kubelet, spoken to through the kubelet credential provider
// API). Each is a go-containerregistry authn.Keychain.
//
// Credentials only let sealgate read signatures; they never make an image
// trusted. The package does not log.
package credentials

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// maxConfigSize bounds a credentials or provider configuration file.
const maxConfigSize = 1 << 20

// DockerConfig is a keychain reading a docker config file at every
// resolution, so that rotated credentials are used without a restart. A
// file that does not exist holds no credentials; one that does not parse is
// an error naming it.
type DockerConfig struct{ Path string }

var _ authn.Keychain = DockerConfig{}

// Resolve returns the credentials the file holds for target's registry, or
// authn.Anonymous.
func (d DockerConfig) Resolve(target authn.Resource) (authn.Authenticator, error) {
	data, err := readBounded(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry credentials: %w", err)
	}
	cf, err := config.LoadFromReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("registry credentials %s: %w", d.Path, err)
	}
	key := target.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey // Docker Hub's key in docker's config
	}
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return nil, fmt.Errorf("registry credentials %s for %s: %w", d.Path, key, err)
	}
	cfg := authn.AuthConfig{Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}
	if cfg == (authn.AuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(cfg), nil
}

// readBounded reads a configuration file of at most maxConfigSize bytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxConfigSize)
	}
	return data, nil
}
