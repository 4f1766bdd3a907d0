//go:build integration

package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sealgate/sealgate/internal/testenv"
)

// crioNode starts CRI-O for the fixture's registry and sandbox image.
func (f *fixture) crioNode(t testing.TB, opts testenv.CRIOOptions) *testenv.CRIO {
	t.Helper()
	if opts.PauseImage == "" {
		opts.PauseImage = f.sandbox.String()
	}
	opts.InsecureRegistries = append(opts.InsecureRegistries, f.reg.Addr)
	return testenv.NewCRIO(t, opts)
}

// startSealgateCRIO runs `sealgate run` against a CRI-O node with the
// fixture's unsealed policy and waits until CRI-O has it registered and
// synchronized.
func startSealgateCRIO(t testing.TB, f *fixture, c *testenv.CRIO, extra ...string) *sealgate {
	t.Helper()
	return startSealgateCRIOAt(t, f, c, gateSocketDir(t), extra...)
}

// gateSocketDir returns a new runtime gate socket path (short: unix
// socket paths are limited).
func gateSocketDir(t testing.TB) string {
	t.Helper()
	run, err := os.MkdirTemp("", "sgg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	return filepath.Join(run, "gate.sock")
}

// startSealgateCRIOAt is startSealgateCRIO with the runtime gate's socket.
func startSealgateCRIOAt(t testing.TB, f *fixture, c *testenv.CRIO, socket string, extra ...string) *sealgate {
	t.Helper()
	const registered = `plugin \"10-sealgate\" connected and synchronized`
	before := strings.Count(c.Log(), registered)
	s := &sealgate{logPath: filepath.Join(t.TempDir(), "sealgate.log"), exited: make(chan struct{}), gateSocket: socket}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"run", "--nri-socket", c.NRISocket, "--plugin-idx", "10", "--crio-address", c.Socket,
		"--gate-socket", s.gateSocket, "--decision-log", filepath.Join(t.TempDir(), "decisions.log"), "--log-level", "debug"}, extra...)
	if len(extra) == 0 {
		args = append(args, "--insecure-no-tpm", "--policy", f.policy, "--registry-hosts-dir", f.hostsDir, "--bundle-store", "")
	}
	s.cmd = exec.Command(testenv.BuildSealgate(t), args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("sealgate log:\n%s", s.log())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(c.Log(), registered) <= before {
		select {
		case <-s.exited:
			t.Fatalf("sealgate exited before registering (%v):\n%s", s.cmd.ProcessState, s.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealgate did not register with CRI-O within 20s\nsealgate log:\n%s\nCRI-O log:\n%s", s.log(), c.LogTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// TestCRIOSignedRunsUnsignedRefused: on real CRI-O 1.34, an image signed
// with the policy's key runs; an unsigned one is refused with sealgate's
// reason in crictl's output.
func TestCRIOSignedRunsUnsignedRefused(t *testing.T) {
	f := newFixture(t)
	c := f.crioNode(t, testenv.CRIOOptions{})
	s := startSealgateCRIO(t, f, c)
	if _, out, err := c.Run(f.signedTag, "signed", "default"); err != nil {
		t.Fatalf("signed image refused on CRI-O: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	_, out, err := c.Run(f.unsignedTag, "unsigned", "default")
	if err == nil {
		t.Fatalf("unsigned image ran on CRI-O:\n%s", out)
	}
	if !strings.Contains(out, "no signatures") {
		t.Errorf("crictl's output does not carry sealgate's reason:\n%s", out)
	}
	// Decided on the digests CRI-O pulled, found from its annotations and
	// image store (its NRI sends no image).
	for _, want := range [][]string{
		{`msg=allowed`, "image=" + f.signedTag, "digest=" + f.signed.DigestStr(), "container=signed"},
		{`msg=denied`, "image=" + f.unsignedTag, "digest=" + f.unsigned.DigestStr(), "container=unsigned"},
	} {
		waitLog(t, s, 5*time.Second, want...)
	}
	if strings.Contains(s.log(), "containerd") && strings.Contains(s.log(), "level=WARN") && strings.Contains(s.log(), "containerd.sock") {
		t.Errorf("sealgate on CRI-O talks of containerd:\n%s", s.log())
	}
}

// TestCRIOSandboxImageChecked: CRI-O's pause image (from its
// configuration, as CRI-O reports it) is decided at RunPodSandbox: allowed
// by the fixture's rule for it, refused by a policy without one.
func TestCRIOSandboxImageChecked(t *testing.T) {
	f := newFixture(t)
	c := f.crioNode(t, testenv.CRIOOptions{})
	s := startSealgateCRIO(t, f, c)
	if _, out, err := c.Run(f.signedTag, "with-rule", "default"); err != nil {
		t.Fatalf("a pod refused with a rule for the sandbox image: %v\n%s", err, out)
	}
	waitLog(t, s, 5*time.Second, "msg=\"allowed without signatures (audited)\"", "digest="+f.sandbox.DigestStr(), "container=sandbox")
	s.stop()

	noSandboxRule := strings.Replace(f.policyYAML(), "  - name: "+ruleSandbox+"\n    images: [\""+f.reg.Ref("sandbox")+"\"]\n    action: allow\n", "", 1)
	if noSandboxRule == f.policyYAML() {
		t.Fatal("the fixture policy has no sandbox rule to take out")
	}
	pol := filepath.Join(f.trustDir, "no-sandbox-rule.yaml") // beside keys/
	writeFile(t, pol, noSandboxRule)
	s = startSealgateCRIO(t, f, c, "--insecure-no-tpm", "--policy", pol, "--registry-hosts-dir", f.hostsDir, "--bundle-store", "")
	_, out, err := c.Run(f.signedTag, "without-rule", "default")
	if err == nil {
		t.Fatalf("a pod ran whose sandbox image no rule allows:\n%s", out)
	}
	if !strings.Contains(out, "runp") && !strings.Contains(out, "sandbox") {
		t.Errorf("not refused at the sandbox:\n%s", out)
	}
	waitLog(t, s, 5*time.Second, "msg=denied", "digest="+f.sandbox.DigestStr(), "container=sandbox")
}

// pushIndex pushes an OCI index of busybox images, one per architecture
// given (linux), and returns its digest and its children's, in order.
func pushIndex(t *testing.T, f *fixture, repoTag string, archs ...string) (name.Digest, []v1.Hash) {
	t.Helper()
	var adds []mutate.IndexAddendum
	var children []v1.Hash
	for _, arch := range archs {
		img := busyboxImage(t, repoTag+"-"+arch)
		mt, err := img.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		children = append(children, d)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{MediaType: mt, Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	d, err := f.reg.PushIndex(idx, repoTag)
	if err != nil {
		t.Fatal(err)
	}
	return d, children
}

// TestCRIOMultiArch: CRI-O pulls a multi-arch index by tag and records
// the platform manifest it chose, not the index. A signed index: the
// container runs (the platform manifest is traced to the index through the
// tag, and the index lists it). An index whose only signature is over the
// other platform's manifest, under acceptPlatformSignature: the manifest
// CRI-O runs is unsigned, and the container is refused, naming it. An
// index that is not signed, whose manifest CRI-O runs is, without
// acceptPlatformSignature: refused, saying why.
func TestCRIOMultiArch(t *testing.T) {
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if other == "" {
		t.Skipf("no second architecture for %s", runtime.GOARCH)
	}
	f := newFixture(t)
	cosign := testenv.NewCosign(t)
	priv, pub, err := cosign.GenerateKeyPair("multi")
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, pub, filepath.Join(f.trustDir, "keys", "multi.pub"))

	signedIdx, _ := pushIndex(t, f, "multi/signed:v1", runtime.GOARCH, other)
	if err := cosign.Sign(priv, signedIdx.String()); err != nil {
		t.Fatal(err)
	}
	otherSigned, otherChildren := pushIndex(t, f, "platform/other:v1", runtime.GOARCH, other)
	if err := cosign.Sign(priv, otherSigned.Context().Digest(otherChildren[1].String()).String()); err != nil {
		t.Fatal(err)
	}
	ownSigned, ownChildren := pushIndex(t, f, "multi/own:v1", runtime.GOARCH, other)
	if err := cosign.Sign(priv, ownSigned.Context().Digest(ownChildren[0].String()).String()); err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.policy, strings.Replace(f.policyYAML(), "rules:\n", fmt.Sprintf(`rules:
  - name: multi
    images: ["%s"]
    signatures:
      authorities:
        - key: keys/multi.pub
  - name: platform
    images: ["%s"]
    signatures:
      acceptPlatformSignature: true
      authorities:
        - key: keys/multi.pub
`, f.reg.Ref("multi/**"), f.reg.Ref("platform/**")), 1))

	c := f.crioNode(t, testenv.CRIOOptions{})
	s := startSealgateCRIO(t, f, c)
	if _, out, err := c.Run(f.reg.Ref("multi/signed:v1"), "signed-index", "default"); err != nil {
		t.Fatalf("a signed index pulled by tag was refused on CRI-O: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	waitLog(t, s, 5*time.Second, "msg=allowed", "container=signed-index")

	_, out, err := c.Run(f.reg.Ref("platform/other:v1"), "other-signed", "default")
	if err == nil {
		t.Fatalf("an index whose signed manifest is not the one CRI-O runs was allowed:\n%s", out)
	}
	if !strings.Contains(out, otherChildren[0].String()) {
		t.Errorf("the refusal does not name the manifest CRI-O runs (%s):\n%s", otherChildren[0], out)
	}

	_, out, err = c.Run(f.reg.Ref("multi/own:v1"), "own-signed", "default")
	if err == nil {
		t.Fatalf("a platform manifest's own signature let an unsigned index in without acceptPlatformSignature:\n%s", out)
	}
	if !strings.Contains(out, "acceptPlatformSignature") {
		t.Errorf("the refusal does not say why:\n%s", out)
	}
}

// TestCRIOSynchronizeDecidesRunning: containers CRI-O runs before sealgate
// connects (NRI Synchronize) are decided from CRI-O's annotations and image
// store: the signed one ahead of time, the unsigned one named as running
// while the policy would deny it.
func TestCRIOSynchronizeDecidesRunning(t *testing.T) {
	f := newFixture(t)
	c := f.crioNode(t, testenv.CRIOOptions{})
	for _, img := range []struct{ ref, name string }{{f.signedTag, "early-signed"}, {f.unsignedTag, "early-unsigned"}} {
		if _, out, err := c.Run(img.ref, img.name, "default"); err != nil {
			t.Fatalf("%s without sealgate: %v\n%s", img.ref, err, out)
		}
	}
	s := startSealgateCRIO(t, f, c)
	waitLog(t, s, 30*time.Second, "decided ahead of time", "digest="+f.signed.DigestStr())
	waitLog(t, s, 30*time.Second, "a running container's image is not allowed by the policy", "pod=default/early-unsigned", "digest="+f.unsigned.DigestStr())
}

// TestCRIOMirrorFromRegistriesConf: the upstream registry is down and a
// mirror from registries.conf (the file CRI-O reads, given to sealgate with
// --registries-conf) holds the image and its signature, signed for the
// upstream name: CRI-O pulls through the mirror, sealgate finds the
// signature there, and the container runs; an unsigned image on the same
// mirror is refused. A registry registries.conf blocks is refused.
func TestCRIOMirrorFromRegistriesConf(t *testing.T) {
	f := newFixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstream := l.Addr().String()
	l.Close() // nothing listens: the upstream is down
	mirrored := pushBusybox(t, f.reg, "apps/mirrored:v1", "mirrored", "sleep", "3600")
	cosign := testenv.NewCosign(t)
	priv, pub, err := cosign.GenerateKeyPair("upstream")
	if err != nil {
		t.Fatal(err)
	}
	if err := cosign.Sign(priv, mirrored.String(), "--sign-container-identity", upstream+"/apps/mirrored"); err != nil {
		t.Fatal(err)
	}
	copyFile(t, pub, filepath.Join(f.trustDir, "keys", "upstream.pub"))
	writeFile(t, f.policy, f.policyYAML()+fmt.Sprintf(`  - name: upstream
    images: ["%s/**"]
    signatures:
      authorities:
        - key: keys/upstream.pub
`, upstream))
	blocked := "blocked.example.com"
	regs := fmt.Sprintf(`unqualified-search-registries = []

[[registry]]
location = %q
insecure = true

[[registry.mirror]]
location = %q
insecure = true

[[registry]]
location = %q
insecure = true

[[registry]]
location = %q
blocked = true
`, upstream, f.reg.Addr, f.reg.Addr, blocked)
	c := testenv.NewCRIO(t, testenv.CRIOOptions{PauseImage: f.sandbox.String(), RegistriesConf: regs})
	s := startSealgateCRIO(t, f, c, "--insecure-no-tpm", "--policy", f.policy, "--registries-conf", c.RegistriesConfPath,
		"--registries-conf-dir", filepath.Join(t.TempDir(), "none"), "--containers-certs-dir", t.TempDir(), "--bundle-store", "")
	if _, out, err := c.Run(upstream+"/apps/mirrored:v1", "mirrored", "default"); err != nil {
		t.Fatalf("signed image behind a registries.conf mirror refused with the upstream down: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	waitLog(t, s, 5*time.Second, "msg=allowed", "image="+upstream+"/apps/mirrored", "source=verified")
	if _, out, err := c.Run(upstream+"/apps/unsigned:v1", "unsigned", "default"); err == nil || !strings.Contains(out, "sealgate: denied") {
		t.Fatalf("unsigned image behind the mirror not refused by sealgate: %v\n%s", err, out)
	}
	// sealgate's own view of a blocked registry: refused, naming the file.
	out, code := sealgateCmd(t, "verify", "--insecure-no-tpm", "--policy", f.policy, "--registries-conf", c.RegistriesConfPath,
		"--registries-conf-dir", filepath.Join(t.TempDir(), "none"), "--bundle-store", "", blocked+"/apps/x@sha256:"+strings.Repeat("a", 64))
	if code == 0 || !strings.Contains(out, "blocked") {
		t.Errorf("verify of an image on a blocked registry: exit %d\n%s", code, out)
	}
}

// TestCRIOPulledImageVerifiedAhead: CRI-O reports no pulls on the CRI;
// sealgate reads its image list and verifies a newly pulled image before
// any container of it exists, so that the first container is a cache hit.
func TestCRIOPulledImageVerifiedAhead(t *testing.T) {
	f := newFixture(t)
	c := f.crioNode(t, testenv.CRIOOptions{})
	s := startSealgateCRIO(t, f, c, "--insecure-no-tpm", "--policy", f.policy, "--registry-hosts-dir", f.hostsDir, "--bundle-store", "", "--crio-image-poll", "500ms")
	if err := c.Pull(f.signedTag); err != nil {
		t.Fatal(err)
	}
	waitLog(t, s, 10*time.Second, "decided ahead of time", `why="image pulled"`, "digest="+f.signed.DigestStr(), "allowed=true")
	if _, out, err := c.Run(f.signedTag, "after-pull", "default"); err != nil {
		t.Fatalf("signed image refused: %v\n%s", err, out)
	}
	waitLog(t, s, 5*time.Second, "msg=allowed", "container=after-pull", "source=cache")
}
