//go:build integration

package integration

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrivateRegistryCredentials: a registry that requires a password. The
// image is on the node already (pulled with the node's own credentials);
// sealgate without credentials cannot read its signatures and refuses it;
// with a docker config file given to it, or through a kubelet credential
// provider exec plugin that returns the password, it reads them and the
// signed image runs. Real containerd, cosign and registry.
func TestPrivateRegistryCredentials(t *testing.T) {
	f := newFixture(t)
	c := f.node(t)
	for _, img := range []string{f.signedTag, f.sandbox.String()} {
		if err := c.Pull(img); err != nil {
			t.Fatal(err)
		}
	}
	const user, password = "puller", "s3cret"
	f.reg.RequireAuth(user, password)
	dir := t.TempDir()
	none := filepath.Join(dir, "absent.json")
	base := []string{"--insecure-no-tpm", "--policy", f.policy, "--registry-hosts-dir", f.hostsDir, "--bundle-store", ""}

	s := startSealgateWith(t, c, append(base, "--registry-credentials", none)...)
	if _, out, err := c.Run(f.signedTag, "anonymous", "default"); err == nil || !strings.Contains(out, "sealgate: denied") {
		t.Fatalf("signatures of a private registry read without credentials: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	s.stop()

	config := filepath.Join(dir, "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	writeFile(t, config, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, f.reg.Addr, auth))
	s = startSealgateWith(t, c, append(base, "--registry-credentials", config)...)
	if _, out, err := c.Run(f.signedTag, "with-file", "default"); err != nil {
		t.Fatalf("signed image refused with the credentials file: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	s.stop()

	bin := filepath.Join(dir, "bin")
	reply := fmt.Sprintf(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"1h","auth":{%q:{"username":%q,"password":%q}}}`,
		f.reg.Addr, user, password)
	plugin := "#!/bin/sh\ncat >" + filepath.Join(dir, "request") + "\ncat <<'REPLY'\n" + reply + "\nREPLY\n"
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "test-credential-provider"), []byte(plugin), 0o755); err != nil {
		t.Fatal(err)
	}
	providers := filepath.Join(dir, "credential-providers.yaml")
	writeFile(t, providers, fmt.Sprintf("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"+
		"  - name: test-credential-provider\n    matchImages: [%q]\n    defaultCacheDuration: 10m\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n", f.reg.Addr))
	s = startSealgateWith(t, c, append(base, "--registry-credentials", none,
		"--image-credential-provider-config", providers, "--image-credential-provider-bin-dir", bin)...)
	if _, out, err := c.Run(f.signedTag, "with-provider", "default"); err != nil {
		t.Fatalf("signed image refused with the credential provider: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	if req := readFile(t, filepath.Join(dir, "request")); !strings.Contains(req, "CredentialProviderRequest") || !strings.Contains(req, f.reg.Addr+"/apps/signed") {
		t.Errorf("the plugin was asked %q", req)
	}
}
