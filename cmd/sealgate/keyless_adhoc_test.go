package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestAdhocKeylessAgreesWithCosign: the keyless ad-hoc flags decide as
// cosign verify does on the same images, signed keylessly by an offline
// Sigstore (Fulcio certificate with SCT, Rekor entry with its signed entry
// timestamp) and read by both from a registry on 127.0.0.1 with the same
// trusted_root.json.
func TestAdhocKeylessAgreesWithCosign(t *testing.T) {
	cs := testenv.NewCosign(t)
	sg := testenv.NewSigstore(t)
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{})
	hosts := filepath.Join(t.TempDir(), "certs.d")
	push := func(seed int64, repo string, leaf func(*testenv.LeafOptions), mutations ...testenv.Mutation) name.Digest {
		t.Helper()
		img, err := testenv.RandomImage(seed)
		if err != nil {
			t.Fatal(err)
		}
		d, err := reg.Push(img, repo+":v1")
		if err != nil {
			t.Fatal(err)
		}
		if leaf == nil {
			return d
		}
		o := sg.DefaultLeaf()
		// cosign checks the certificate at the log's integrated time,
		// which is sg.Now; keep it valid well past the test's run.
		o.NotAfter = sg.Now.Add(time.Hour)
		leaf(&o)
		payload, err := testenv.SimpleSigningPayload(d)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := sg.SignClassic(o, payload, mutations...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.PushCosignSignatures(d, sig); err != nil {
			t.Fatal(err)
		}
		return d
	}
	own, err := testenv.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caDir := t.TempDir()
	roots, inters := filepath.Join(caDir, "roots.pem"), filepath.Join(caDir, "intermediates.pem")
	for file, c := range map[string]*x509.Certificate{roots: own.Root, inters: own.Cert} {
		if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// An image signed with a certificate of the operator's own CA, as
	// cosign sign --certificate --certificate-chain --tlog-upload=false
	// makes it: no issuer extension, no SCT, no log entry.
	ownSigned := push(4, "app/own-ca", func(o *testenv.LeafOptions) {
		*o = testenv.LeafOptions{Subject: "release@example.com", CA: own, NoSCT: true, NotBefore: sg.Now.Add(-time.Minute), NotAfter: sg.Now.Add(time.Hour)}
	}, testenv.WithoutRekorEntry())
	signed := push(1, "app/signed", func(*testenv.LeafOptions) {})
	noSCT := push(2, "app/nosct", func(o *testenv.LeafOptions) { o.NoSCT = true })
	unsigned := push(3, "app/unsigned", nil)
	noLog := push(5, "app/nolog", func(*testenv.LeafOptions) {}, testenv.WithoutRekorEntry())
	caFlags := func(identity string) []string {
		return []string{"--ca-roots", roots, "--ca-intermediates", inters, "--certificate-identity", identity, "--certificate-oidc-issuer-regexp", ".*", "--insecure-ignore-tlog", "--insecure-ignore-sct"}
	}
	right := []string{"--certificate-identity", testenv.KeylessSubject, "--certificate-oidc-issuer", testenv.KeylessIssuer}
	for _, tc := range []struct {
		name  string
		image name.Digest
		flags []string
		ok    bool
		// stricter: cosign allows, sealgate denies on purpose.
		stricter bool
	}{
		{"right identity", signed, right, true, false},
		{"identity by regexp", signed, []string{"--certificate-identity-regexp", `^https://github\.com/myorg/`, "--certificate-oidc-issuer", testenv.KeylessIssuer}, true, false},
		{"workflow repository", signed, append(append([]string(nil), right...), "--certificate-github-workflow-repository", "myorg/app"), true, false},
		{"another identity", signed, []string{"--certificate-identity", "https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0.0", "--certificate-oidc-issuer", testenv.KeylessIssuer}, false, false},
		{"another issuer", signed, []string{"--certificate-identity", testenv.KeylessSubject, "--certificate-oidc-issuer", "https://accounts.google.com"}, false, false},
		{"another workflow repository", signed, append(append([]string(nil), right...), "--certificate-github-workflow-repository", "myorg/other"), false, false},
		{"no SCT", noSCT, right, false, false},
		{"no SCT, --insecure-ignore-sct", noSCT, append(append([]string(nil), right...), "--insecure-ignore-sct"), true, false},
		{"unsigned", unsigned, right, false, false},
		// A Fulcio certificate lives minutes: without a log entry or a TSA
		// timestamp cosign checks it against the clock, sealgate denies.
		{name: "no log entry, --insecure-ignore-tlog", image: noLog, flags: append(append([]string(nil), right...), "--insecure-ignore-tlog"), ok: true, stricter: true},
		{"workflow ref", signed, append(append([]string(nil), right...), "--certificate-github-workflow-ref", testenv.KeylessRef), true, false},
		{"another workflow ref", signed, append(append([]string(nil), right...), "--certificate-github-workflow-ref", "refs/heads/main"), false, false},
		{"own CA", ownSigned, caFlags("release@example.com"), true, false},
		{"own CA, another identity", ownSigned, caFlags("other@example.com"), false, false},
		{"own CA, issuer required", ownSigned, []string{"--ca-roots", roots, "--ca-intermediates", inters, "--certificate-identity", "release@example.com", "--certificate-oidc-issuer", "https://issuer.example", "--insecure-ignore-tlog", "--insecure-ignore-sct"}, false, false},
		{"Fulcio certificate against own CA", signed, caFlags(testenv.KeylessSubject), false, false},
		{"own CA against the Fulcio root", ownSigned, []string{"--certificate-identity", "release@example.com", "--certificate-oidc-issuer-regexp", ".*", "--insecure-ignore-tlog", "--insecure-ignore-sct"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags := tc.flags
			if flags[0] != "--ca-roots" {
				// Fulcio certificates: the offline Sigstore's root. With
				// --ca-roots, as cosign, no trusted root.
				flags = append([]string{"--trusted-root", sg.RootFile}, flags...)
			}
			args := append([]string{"verify", "--allow-insecure-registry", "--allow-http-registry"}, flags...)
			cosignOut, cosignErr := cs.Run(append(args, tc.image.String())...)
			code, stdout, stderr := runMain(append([]string{"verify", tc.image.String(), "--registry-hosts-dir", hosts}, flags...)...)
			if (cosignErr == nil) != tc.ok || (code == exitOK) != (tc.ok && !tc.stricter) || code == exitUsage {
				t.Errorf("cosign err %v %s\nsealgate exit %d\n%s%s", cosignErr, strings.TrimSpace(string(cosignOut)), code, stdout, stderr)
			}
		})
	}
}

// TestAdhocKeylessAttestationAgreesWithCosign: --type with the keyless
// flags decides as cosign verify-attestation --new-bundle-format does, on
// SLSA provenance attached as a Sigstore bundle referrer, signed keylessly
// by an offline Sigstore.
func TestAdhocKeylessAttestationAgreesWithCosign(t *testing.T) {
	cs := testenv.NewCosign(t)
	sg := testenv.NewSigstore(t)
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Referrers: true})
	hosts := filepath.Join(t.TempDir(), "certs.d")
	img, err := testenv.RandomImage(11)
	if err != nil {
		t.Fatal(err)
	}
	d, err := reg.Push(img, "app/attested:v1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := testenv.Statement("https://slsa.dev/provenance/v1", d.DigestStr(), map[string]any{"buildDefinition": map[string]any{"buildType": "https://example.com/build/v1"}})
	if err != nil {
		t.Fatal(err)
	}
	o := sg.DefaultLeaf()
	o.NotAfter = sg.Now.Add(time.Hour)
	k, err := sg.SignStatement(o, st)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sg.Bundle(k, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushBundle(d, b); err != nil {
		t.Fatal(err)
	}
	right := []string{"--certificate-identity", testenv.KeylessSubject, "--certificate-oidc-issuer", testenv.KeylessIssuer}
	for _, tc := range []struct {
		name  string
		flags []string
		ok    bool
	}{
		{"right identity and type", append([]string{"--type", "slsaprovenance1"}, right...), true},
		{"type as a URI", append([]string{"--type", "https://slsa.dev/provenance/v1"}, right...), true},
		{"another type", append([]string{"--type", "cyclonedx"}, right...), false},
		{"another identity", []string{"--type", "slsaprovenance1", "--certificate-identity", "https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0.0", "--certificate-oidc-issuer", testenv.KeylessIssuer}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags := append([]string{"--trusted-root", sg.RootFile}, tc.flags...)
			cosignOut, cosignErr := cs.Run(append(append([]string{"verify-attestation", "--new-bundle-format", "--allow-insecure-registry", "--allow-http-registry"}, flags...), d.String())...)
			code, stdout, stderr := runMain(append([]string{"verify", d.String(), "--registry-hosts-dir", hosts}, flags...)...)
			if (cosignErr == nil) != tc.ok || (code == exitOK) != tc.ok || code == exitUsage {
				t.Errorf("cosign err %v %s\nsealgate exit %d\n%s%s", cosignErr, strings.TrimSpace(string(cosignOut)), code, stdout, stderr)
			}
		})
	}
}
