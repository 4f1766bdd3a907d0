package credentials

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containers/image/v5/pkg/docker/config"
	"github.com/containers/image/v5/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	toml "github.com/pelletier/go-toml/v2"
)

// ContainersAuth is a keychain reading a containers-auth.json file, the
// file CRI-O (global_auth_file), podman and skopeo pull with, through
// containers/image's own lookup so that sealgate finds what CRI-O finds: a
// key may name a repository, a namespace or a registry, the most specific
// wins, and credential helpers named in the file or in registries.conf are
// run. The file is read at every resolution; one that does not exist holds
// no credentials.
type ContainersAuth struct {
	// Path is the auth file; empty is containers/image's default for this
	// user (for root without XDG_RUNTIME_DIR, /run/containers/0/auth.json,
	// then ~/.config/containers/auth.json and docker's files), which is
	// where CRI-O looks when its global_auth_file is empty.
	Path string
	// RegistriesConf and RegistriesConfDir are the registries.conf (and
	// its drop-ins) naming credential helpers; empty is the system's.
	RegistriesConf, RegistriesConfDir string
}

var _ authn.Keychain = ContainersAuth{}

// Resolve returns the credentials the file holds for target (a repository
// or a registry), or authn.Anonymous.
func (c ContainersAuth) Resolve(target authn.Resource) (authn.Authenticator, error) {
	if c.Path != "" {
		if fi, err := os.Stat(c.Path); err == nil && fi.Size() > maxConfigSize {
			return nil, fmt.Errorf("registry auth file %s is larger than %d bytes", c.Path, maxConfigSize)
		}
	}
	sys := &types.SystemContext{AuthFilePath: c.Path, SystemRegistriesConfPath: c.RegistriesConf, SystemRegistriesConfDirPath: c.RegistriesConfDir}
	creds, err := config.GetCredentials(sys, containersKey(target))
	if err != nil {
		return nil, fmt.Errorf("registry auth file %s: %w", c.describe(), err)
	}
	if creds == (types.DockerAuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: creds.Username, Password: creds.Password, IdentityToken: creds.IdentityToken}), nil
}

func (c ContainersAuth) describe() string {
	if c.Path == "" {
		return "(containers' default)"
	}
	return c.Path
}

// containersKey is target as containers/image names it: Docker Hub is
// docker.io, not index.docker.io.
func containersKey(target authn.Resource) string {
	key := target.String()
	reg := target.RegistryStr()
	if reg == name.DefaultRegistry {
		key = "docker.io" + strings.TrimPrefix(key, reg)
	}
	return key
}

// CRIOAuth is the auth file CRI-O pulls with, found at every resolution
// from CRI-O's configuration (global_auth_file in crio.conf and its
// drop-ins), so that one file configures both CRI-O and sealgate and a
// change of CRI-O's configuration is followed without a restart. Without a
// CRI-O configuration on the node it holds no credentials.
type CRIOAuth struct {
	// Config and ConfigDir are crio.conf and its drop-in folder.
	Config, ConfigDir string
	// RegistriesConf and RegistriesConfDir are the registries.conf (and
	// its drop-ins) naming credential helpers.
	RegistriesConf, RegistriesConfDir string
}

var _ authn.Keychain = CRIOAuth{}

// Resolve returns the credentials CRI-O's auth file holds for target.
func (c CRIOAuth) Resolve(target authn.Resource) (authn.Authenticator, error) {
	path, found, err := CRIOAuthFile(c.Config, c.ConfigDir)
	if err != nil {
		return nil, err
	}
	if !found {
		return authn.Anonymous, nil
	}
	return ContainersAuth{Path: path, RegistriesConf: c.RegistriesConf, RegistriesConfDir: c.RegistriesConfDir}.Resolve(target)
}

// CRIOAuthFile returns the global_auth_file CRI-O's configuration sets
// (crio.conf, then its drop-ins in name order, the last that sets it
// winning, as CRI-O reads them); found is false when neither exists. An
// empty path with found means containers/image's default.
func CRIOAuthFile(configFile, configDir string) (path string, found bool, err error) {
	files := []string{configFile}
	// CRI-O reads every file under the drop-in folder, in walk order.
	err = filepath.WalkDir(configDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("CRI-O's configuration: %w", err)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		data, err := readBounded(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", false, fmt.Errorf("CRI-O's configuration: %w", err)
		}
		var conf struct {
			Crio struct {
				Image struct {
					GlobalAuthFile *string `toml:"global_auth_file"`
				} `toml:"image"`
			} `toml:"crio"`
		}
		if err := toml.Unmarshal(data, &conf); err != nil {
			return "", false, fmt.Errorf("CRI-O's configuration %s: %w", f, err)
		}
		found = true
		if p := conf.Crio.Image.GlobalAuthFile; p != nil {
			path = *p
		}
	}
	return path, found, nil
}
