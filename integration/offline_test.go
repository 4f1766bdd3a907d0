//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/tpm/tpmtest"
)

// sealedNode is a containerd node whose sealgate anchors its trust store in
// swtpm and persists its verdicts.
type sealedNode struct {
	f        *fixture
	c        *testenv.Containerd
	tpm      *tpmtest.Swtpm
	trustDir string
	stateDir string
	bundles  string // the local bundle store
}

// newSealedNode writes the fixture's policy (with maxAge as offline limit)
// into a trust store, seals it to a fresh swtpm and starts containerd.
func newSealedNode(t *testing.T, maxAge time.Duration) *sealedNode {
	t.Helper()
	f := newFixture(t)
	n := &sealedNode{f: f, tpm: tpmtest.StartSwtpm(t), trustDir: f.trustDir, stateDir: t.TempDir(), bundles: t.TempDir()}
	writeFile(t, f.policy, strings.Replace(f.policyYAML(), "default: deny\n", fmt.Sprintf("default: deny\noffline:\n  maxVerdictAge: %s\n", maxAge), 1))
	n.sealgate(t, "trust", "seal", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec)
	n.c = f.node(t)
	return n
}

// sealgate runs one sealgate command and fails the test if it fails.
func (n *sealedNode) sealgate(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(testenv.BuildSealgate(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sealgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (n *sealedNode) start(t *testing.T, extra ...string) *sealgate {
	t.Helper()
	return startSealgateWith(t, n.c, append([]string{"--trust-dir", n.trustDir, "--tpm", n.tpm.Spec,
		"--state-dir", n.stateDir, "--registry-hosts-dir", n.f.hostsDir, "--bundle-store", n.bundles}, extra...)...)
}

// run runs image in a new pod and reports crictl's output and error.
func (n *sealedNode) run(t *testing.T, image, name string) (string, error) {
	t.Helper()
	_, out, err := n.c.Run(image, name, "default")
	return out, err
}

// TestOfflineAfterRestart: an image verified while the registry was up
// keeps starting after the registry is gone and sealgate restarted (its
// verdict is read back from the TPM-authenticated cache); an image never
// verified is refused; once the verdict is older than maxVerdictAge, the
// cached image is refused too.
func TestOfflineAfterRestart(t *testing.T) {
	const maxAge = 25 * time.Second
	n := newSealedNode(t, maxAge)
	// Pulled while sealgate is not running: never verified.
	if err := n.c.Pull(n.f.unsignedTag); err != nil {
		t.Fatal(err)
	}
	s := n.start(t)
	if out, err := n.run(t, n.f.signedTag, "online"); err != nil {
		t.Fatalf("signed image refused online: %v\n%s", err, out)
	}
	verifiedAt := time.Now()
	s.stop() // flushes the verdict cache

	if err := n.f.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	s = n.start(t)
	if out, err := n.run(t, n.f.signedTag, "offline"); err != nil {
		t.Fatalf("verified image refused offline after restart: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	if !strings.Contains(s.log(), "source=offline-cache") {
		t.Errorf("the offline decision does not say source=offline-cache:\n%s", s.log())
	}
	out, err := n.run(t, n.f.unsignedTag, "never-verified")
	if err == nil || !strings.Contains(out, "sealgate: denied") || !strings.Contains(out, "unreachable") {
		t.Errorf("never-verified image offline: err = %v\n%s", err, out)
	}

	time.Sleep(time.Until(verifiedAt.Add(maxAge + time.Second)))
	out, err = n.run(t, n.f.signedTag, "too-old")
	if err == nil || !strings.Contains(out, "no valid cached verdict") {
		t.Errorf("verdict older than maxVerdictAge still served: err = %v\n%s", err, out)
	}
}

// TestPulledImageVerifiedAhead: when containerd reports a pull, sealgate
// verifies the image before any container of it exists, so the create is
// decided from the cache.
func TestPulledImageVerifiedAhead(t *testing.T) {
	n := newSealedNode(t, time.Hour)
	s := n.start(t)
	if err := n.c.Pull(n.f.signedTag); err != nil {
		t.Fatal(err)
	}
	digest := n.f.signed.DigestStr()
	waitFor(t, 20*time.Second, func() bool {
		return hasLine(s.log(), "decided ahead of time", "image pulled", digest, "source=verified")
	}, func() string { return "no ahead-of-time decision for the pulled image:\n" + s.log() })
	if out, err := n.run(t, n.f.signedTag, "after-pull"); err != nil {
		t.Fatalf("signed image refused: %v\n%s", err, out)
	}
	if !hasLine(s.log(), "msg=allowed", digest, "source=cache") {
		t.Errorf("the create was not decided from the cache:\n%s", s.log())
	}
}

// TestStartRefusesChangedTrustStore: a key added to the trust store after
// sealing makes sealgate refuse to start, naming the file.
func TestStartRefusesChangedTrustStore(t *testing.T) {
	n := newSealedNode(t, time.Hour)
	// A file the policy does not name is not sealed and changes nothing;
	// the policy edited is refused.
	writeFile(t, filepath.Join(n.trustDir, "keys", "extra.pub"), "not sealed\n")
	pol := filepath.Join(n.trustDir, "policy.yaml")
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, pol, string(b)+"# edited after sealing\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testenv.BuildSealgate(t), "run", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec,
		"--state-dir", n.stateDir, "--nri-socket", n.c.NRISocket, "--containerd-address", "", "--gate-socket", "").CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("sealgate started on a changed trust store:\n%s", out)
	}
	if !strings.Contains(string(out), "policy.yaml was changed") {
		t.Errorf("the refusal does not name the file:\n%s", out)
	}
	if _, statErr := os.Stat(filepath.Join(n.trustDir, "sealed.json")); statErr != nil {
		t.Fatal(statErr)
	}
}

func hasLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		if len(missing(line, parts...)) == 0 {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, timeout time.Duration, ok func() bool, msg func() string) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !ok(); {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBundleImportAirGapped: on a node whose registry holds the image but
// not its signatures, the signed image is refused until the signatures
// exported on a connected machine are imported into the local bundle
// store; then it starts (verified like any other signature).
func TestBundleImportAirGapped(t *testing.T) {
	n := newSealedNode(t, time.Hour)
	export := filepath.Join(t.TempDir(), "signatures.tar")
	n.sealgate(t, "bundle", "export", n.f.signed.String(), "-o", export, "--registry-hosts-dir", n.f.hostsDir)
	sigTag := n.f.signed.Context().String() + ":" + strings.Replace(n.f.signed.DigestStr(), ":", "-", 1) + ".sig"
	if err := n.f.reg.Delete(sigTag); err != nil {
		t.Fatal(err)
	}

	s := n.start(t)
	out, err := n.run(t, n.f.signedTag, "before-import")
	if err == nil || !strings.Contains(out, "no signatures found") {
		t.Fatalf("signed image without its signatures: err = %v\n%s", err, out)
	}
	s.stop()

	n.sealgate(t, "bundle", "import", export, "--bundle-store", n.bundles)
	s = n.start(t)
	if out, err := n.run(t, n.f.signedTag, "after-import"); err != nil {
		t.Fatalf("signed image refused after bundle import: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
}

// TestBundleSharedDigestAirGapped: two repositories hold the same digest,
// each signed for its own name. Both are exported in one file, their
// signatures removed from the registry, the file imported: both run, each
// by its own signature (the export keeps every repository's material for
// the shared digest).
func TestBundleSharedDigestAirGapped(t *testing.T) {
	f := newFixture(t)
	copyRef := f.reg.Ref("apps/copy:v1")
	if err := f.reg.CopyManifest(f.signed.String(), copyRef); err != nil {
		t.Fatal(err)
	}
	copied := f.reg.Ref("apps/copy@" + f.signed.DigestStr())
	cosign := testenv.NewCosign(t)
	priv, pub, err := cosign.GenerateKeyPair("copy")
	if err != nil {
		t.Fatal(err)
	}
	if err := cosign.Sign(priv, copied); err != nil {
		t.Fatal(err)
	}
	copyFile(t, pub, filepath.Join(f.trustDir, "keys", "copy.pub"))
	writeFile(t, f.policy, strings.Replace(f.policyYAML(), "        - key: keys/release.pub\n", "        - key: keys/release.pub\n        - key: keys/copy.pub\n", 1))
	n := &sealedNode{f: f, tpm: tpmtest.StartSwtpm(t), trustDir: f.trustDir, stateDir: t.TempDir(), bundles: t.TempDir()}
	n.sealgate(t, "trust", "seal", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec, "--gate-socket", "")
	n.c = f.node(t)

	export := filepath.Join(t.TempDir(), "signatures.tar")
	out := n.sealgate(t, "bundle", "export", f.signed.String(), copied, "-o", export, "--registry-hosts-dir", f.hostsDir)
	for _, want := range []string{"exported " + f.signed.String() + ": 1 signature", "exported " + copied + ": 1 signature"} {
		if !strings.Contains(out, want) {
			t.Errorf("export report lacks %q:\n%s", want, out)
		}
	}
	for _, repo := range []string{"apps/signed", "apps/copy"} {
		if err := f.reg.Delete(f.reg.Ref(repo + ":" + strings.Replace(f.signed.DigestStr(), ":", "-", 1) + ".sig")); err != nil {
			t.Fatal(err)
		}
	}
	n.sealgate(t, "bundle", "import", export, "--bundle-store", n.bundles)
	s := n.start(t)
	for i, img := range []string{f.signedTag, copyRef} {
		if out, err := n.run(t, img, fmt.Sprintf("shared-%d", i)); err != nil {
			t.Fatalf("%s refused after importing the shared-digest export: %v\n%s\nsealgate log:\n%s", img, err, out, s.log())
		}
	}
}
