package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Cosign runs the real cosign CLI offline, so that tests verify signatures
// exactly as cosign users produce them.
//
// Offline means: keys only (no Fulcio, no OIDC), --tlog-upload=false (no
// Rekor), HOME and TUF_ROOT in Dir (nothing read from or written to the
// user's ~/.sigstore), and HTTP(S)_PROXY pointed at a closed port on
// 127.0.0.1 with NO_PROXY for loopback, so that any attempt to reach the
// internet fails at once instead of hanging, while the test registry on
// 127.0.0.1 is reached directly. cosign v2 reaches a plain-HTTP registry on
// 127.0.0.1 without --allow-insecure-registry (go-containerregistry picks
// http for loopback addresses), and `cosign sign --key` with
// --tlog-upload=false makes no other connection. `cosign verify` without
// --trusted-root still tries to fetch the TUF trusted root; offline it warns
// and goes on, so tests that run verify should pass --trusted-root or expect
// the warning.
type Cosign struct {
	// Bin is the cosign binary.
	Bin string
	// Dir holds the keys and is cosign's HOME.
	Dir string
}

// cosignTimeout bounds one cosign run.
const cosignTimeout = 2 * time.Minute

// deadProxy is a closed port on loopback: the discard port, which nothing
// on a test machine listens on.
const deadProxy = "http://127.0.0.1:9"

// NewCosign finds cosign (skipping the test when it is missing, see
// RequireTool) and gives it a fresh directory.
func NewCosign(t testing.TB) *Cosign {
	t.Helper()
	return &Cosign{Bin: RequireTool(t, "cosign"), Dir: t.TempDir()}
}

// GenerateKeyPair writes an unencrypted (empty password) key pair to
// Dir/name.key and Dir/name.pub and returns their paths.
func (c *Cosign) GenerateKeyPair(name string) (priv, pub string, err error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", "", fmt.Errorf("generate key pair: invalid name %q", name)
	}
	prefix := filepath.Join(c.Dir, name)
	if _, err := c.Run("generate-key-pair", "--output-key-prefix", prefix); err != nil {
		return "", "", fmt.Errorf("generate key pair: %w", err)
	}
	priv, pub = prefix+".key", prefix+".pub"
	for _, p := range []string{priv, pub} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("generate key pair: %w", err)
		}
	}
	return priv, pub, nil
}

// Sign signs ref (a digest reference, so that the signed digest is the one
// the test means) with the private key at key and pushes the signature, by
// default as the sha256-<hex>.sig tag. extra is passed before ref, e.g.
// "--new-bundle-format" or "-a", "k=v".
func (c *Cosign) Sign(key, ref string, extra ...string) error {
	args := []string{"sign", "--key", key, "--tlog-upload=false", "--yes"}
	args = append(args, extra...)
	args = append(args, ref)
	if _, err := c.Run(args...); err != nil {
		return fmt.Errorf("cosign sign %s: %w", ref, err)
	}
	return nil
}

// Run runs cosign with args in Dir, offline (see Cosign), with an empty
// COSIGN_PASSWORD, and returns its combined output. On failure the error
// carries the command line and the output.
func (c *Cosign) Run(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cosignTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Dir = c.Dir
	cmd.Env = c.env()
	cmd.Stdin = nil // never prompt
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("cosign %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// env is the caller's environment without anything that would send cosign
// to the network or to the user's files.
func (c *Cosign) env() []string {
	drop := map[string]bool{
		"HOME": true, "COSIGN_PASSWORD": true, "TUF_ROOT": true, "TUF_MIRROR": true,
		"XDG_CONFIG_HOME": true, "XDG_CACHE_HOME": true, "DOCKER_CONFIG": true,
		"HTTP_PROXY": true, "HTTPS_PROXY": true, "NO_PROXY": true,
		"http_proxy": true, "https_proxy": true, "no_proxy": true,
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env,
		"HOME="+c.Dir,
		"XDG_CONFIG_HOME="+filepath.Join(c.Dir, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(c.Dir, ".cache"),
		"DOCKER_CONFIG="+filepath.Join(c.Dir, ".docker"),
		"TUF_ROOT="+filepath.Join(c.Dir, ".sigstore", "root"),
		"COSIGN_PASSWORD=",
		"HTTP_PROXY="+deadProxy,
		"HTTPS_PROXY="+deadProxy,
		"NO_PROXY=127.0.0.1,localhost,::1",
	)
}
