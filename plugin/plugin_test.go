package plugin_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	nri "github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/artifact"
	"github.com/sealgate/sealgate/plugin/check"
	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/decisionlog"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
)

// fixture is a registry on 127.0.0.1 holding images signed (or not) by the
// real cosign CLI, one per case a policy must tell apart.
type fixture struct {
	reg     *testenv.Registry
	dir     string // holds the keys and policies
	digests map[string]name.Digest
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

// loadFixture builds the shared fixture once per test binary: signing with
// cosign takes about a second an image.
func loadFixture(t testing.TB) *fixture {
	t.Helper()
	cosignBin := testenv.RequireTool(t, "cosign")
	fixOnce.Do(func() { fix, fixErr = buildFixture(cosignBin) })
	if fixErr != nil {
		t.Fatalf("build fixture: %v", fixErr)
	}
	return fix
}

func buildFixture(cosignBin string) (*fixture, error) {
	dir, err := os.MkdirTemp("", "sealgate-plugin-test-")
	if err != nil {
		return nil, err
	}
	reg, err := testenv.StartRegistry(testenv.RegistryOptions{})
	if err != nil {
		return nil, err
	}
	f := &fixture{reg: reg, dir: dir, digests: map[string]name.Digest{}}
	cs := &testenv.Cosign{Bin: cosignBin, Dir: dir}
	release, _, err := cs.GenerateKeyPair("release")
	if err != nil {
		return nil, err
	}
	other, _, err := cs.GenerateKeyPair("other")
	if err != nil {
		return nil, err
	}
	push := func(key string, seed int64, repoTag string) (name.Digest, error) {
		img, err := testenv.RandomImage(seed)
		if err != nil {
			return name.Digest{}, err
		}
		d, err := reg.Push(img, repoTag)
		if err != nil {
			return name.Digest{}, err
		}
		f.digests[key] = d
		return d, nil
	}
	steps := []func() error{
		func() error { // signed by the trusted key
			d, err := push("signed", 1, "app/signed:v1")
			if err != nil {
				return err
			}
			return cs.Sign(release, d.String())
		},
		func() error { _, err := push("unsigned", 2, "app/unsigned:v1"); return err },
		func() error { // signed, but by a key the policy does not trust
			d, err := push("otherkey", 3, "app/otherkey:v1")
			if err != nil {
				return err
			}
			return cs.Sign(other, d.String())
		},
		func() error { // carries the signature of the "signed" image, copied over
			d, err := push("copied", 4, "app/copied:v1")
			if err != nil {
				return err
			}
			return reg.CopyManifest(sigTag(f.digests["signed"]), sigTag(d))
		},
		func() error { // signed, then the signature bytes altered
			d, err := push("tampered", 5, "app/tampered:v1")
			if err != nil {
				return err
			}
			if err := cs.Sign(release, d.String()); err != nil {
				return err
			}
			return tamperSignature(sigTag(d))
		},
		func() error { // signed, then the tag moved to an unsigned image
			d, err := push("beforemove", 6, "app/moved:v1")
			if err != nil {
				return err
			}
			if err := cs.Sign(release, d.String()); err != nil {
				return err
			}
			_, err = push("moved", 7, "app/moved:v1")
			return err
		},
		func() error { // an index whose platform manifest alone is signed, in two repositories
			for _, repo := range []string{"app/index", "platform/index"} {
				a, err := testenv.RandomImage(8)
				if err != nil {
					return err
				}
				b, err := testenv.RandomImage(9)
				if err != nil {
					return err
				}
				idx, err := testenv.Index(a, b)
				if err != nil {
					return err
				}
				d, err := reg.PushIndex(idx, repo+":v1")
				if err != nil {
					return err
				}
				f.digests[repo] = d
				ad, err := a.Digest()
				if err != nil {
					return err
				}
				if err := cs.Sign(release, d.Context().Digest(ad.String()).String()); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { _, err := push("infra", 10, "infra/pause:3.10"); return err },
		func() error { // an index signed as a whole, its platform manifest not signed on its own
			a, err := testenv.RandomImage(11)
			if err != nil {
				return err
			}
			b, err := testenv.RandomImage(12)
			if err != nil {
				return err
			}
			idx, err := testenv.Index(a, b)
			if err != nil {
				return err
			}
			d, err := reg.PushIndex(idx, "app/signedindex:v1")
			if err != nil {
				return err
			}
			f.digests["signedindex"] = d
			ad, err := a.Digest()
			if err != nil {
				return err
			}
			f.digests["signedindex/child"] = d.Context().Digest(ad.String())
			return cs.Sign(release, d.String())
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func sigTag(d name.Digest) string {
	return d.Context().String() + ":" + strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig"
}

// tamperSignature flips one bit of the first signature in a .sig manifest.
func tamperSignature(ref string) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	desc, err := remote.Get(r)
	if err != nil {
		return err
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return err
	}
	const ann = "dev.cosignproject.cosign/signature"
	sig, err := base64.StdEncoding.DecodeString(m.Layers[0].Annotations[ann])
	if err != nil {
		return err
	}
	sig[len(sig)/2] ^= 0x01
	m.Layers[0].Annotations[ann] = base64.StdEncoding.EncodeToString(sig)
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return remote.Put(r, rawManifest{raw: raw, mt: desc.MediaType})
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// writePolicy writes a policy for the fixture's registry in the given mode.
func (f *fixture) writePolicy(t testing.TB, mode string) string {
	t.Helper()
	reg := f.reg.Addr
	text := fmt.Sprintf(`mode: %s
default: deny
rules:
  - name: infra
    images: ["%[2]s/infra/**"]
    action: allow
  - name: platform
    images: ["%[2]s/platform/**"]
    signatures:
      acceptPlatformSignature: true
      authorities: [{key: %[3]s}]
  - name: app
    images: ["%[2]s/app/**"]
    signatures:
      authorities:
        - key: %[3]s
`, mode, reg, filepath.Join(f.dir, "release.pub"))
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// node is NRI's real runtime side on a temp socket, with sealgate connected.
type node struct {
	rt     *nri.Adaptation
	plugin *plugin.Plugin
	engine *decision.Engine
	logs   *testenv.SyncBuffer
}

func startNode(t testing.TB, policyFile string, opts ...plugin.Option) *node {
	t.Helper()
	return startNodeWith(t, policyFile, nil, nil, opts...)
}

// startNodeWith starts a node whose runtime side already runs pods and ctrs
// (reported to the plugin at Synchronize).
func startNodeWith(t testing.TB, policyFile string, pods []*api.PodSandbox, ctrs []*api.Container, opts ...plugin.Option) *node {
	t.Helper()
	return startNodeEngine(t, policyFile, pods, ctrs, nil, opts...)
}

// startNodeEngine is startNodeWith with options for the decision engine.
func startNodeEngine(t testing.TB, policyFile string, pods []*api.PodSandbox, ctrs []*api.Container, engineOpts []decision.Option, opts ...plugin.Option) *node {
	t.Helper()
	engine := newEngine(t, policyFile, engineOpts...)
	return startNodeDecider(t, pods, ctrs, engine, engine, opts...)
}

// newEngine is a decision engine for policyFile on a registry source of
// its own.
func newEngine(t testing.TB, policyFile string, opts ...decision.Option) *decision.Engine {
	t.Helper()
	pol, err := policy.Load(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.NewRegistry(source.WithHostsDir(filepath.Join(t.TempDir(), "certs.d")))
	if err != nil {
		t.Fatal(err)
	}
	return engineOver(t, pol, src, opts...)
}

// engineOver builds an engine whose checker fetches from src.
func engineOver(t testing.TB, pol *policy.Policy, src source.Source, opts ...decision.Option) *decision.Engine {
	t.Helper()
	c, err := check.New(pol, src)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := decision.New(pol, c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return engine
}

// startNodeDecider starts NRI's runtime side and a plugin deciding with d
// (engine: the one d decides with first, for the node's accessors).
func startNodeDecider(t testing.TB, pods []*api.PodSandbox, ctrs []*api.Container, d plugin.Decider, engine *decision.Engine, opts ...plugin.Option) *node {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg-nri-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "nri.sock")
	noUpdate := func(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) { return nil, nil }
	rt, err := nri.New("test-runtime", "2.4.2", func(ctx context.Context, cb nri.SyncCB) error {
		_, err := cb(ctx, pods, ctrs)
		return err
	}, noUpdate,
		nri.WithPluginPath(filepath.Join(dir, "plugins")),
		nri.WithPluginConfigPath(filepath.Join(dir, "conf.d")),
		nri.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Stop)

	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := plugin.New(d, append([]plugin.Option{plugin.WithSocketPath(sock), plugin.WithLogger(log)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-p.Synchronized():
	case <-time.After(10 * time.Second):
		t.Fatalf("plugin did not synchronize with the runtime; log:\n%s", logs.String())
	}
	// The plugin is synchronized before the runtime side adds it to its
	// list; probe until a request reaches it (an image no rule matches is
	// decided by the default without a registry request).
	probe := &api.CreateContainerRequest{Pod: testPod, Container: &api.Container{Id: "probe", PodSandboxId: testPod.Id, Name: "probe",
		Image: &api.Image{Name: "example.invalid/probe:v1", Digest: "sha256:" + strings.Repeat("0", 64)}}}
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, _ = rt.CreateContainer(context.Background(), probe)
		if p.Stats().Allowed.Load()+p.Stats().Denied.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runtime side never consulted the plugin; log:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.Stats().Allowed.Store(0)
	p.Stats().Denied.Store(0)
	p.Stats().WouldDeny.Store(0)
	return &node{rt: rt, plugin: p, engine: engine, logs: logs}
}

func TestMain(m *testing.M) {
	logrus.SetLevel(logrus.WarnLevel) // the NRI runtime side logs every connection at info
	os.Exit(m.Run())
}

var testPod = &api.PodSandbox{Id: "pod0", Name: "pod0", Uid: "uid0", Namespace: "default"}

// create asks the runtime side to create a container of image d.
func (n *node) create(t testing.TB, ref name.Digest, tag string) error {
	t.Helper()
	image := ref.Context().String()
	if tag != "" {
		image += ":" + tag
	}
	_, err := n.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{
		Pod: testPod,
		Container: &api.Container{Id: "ctr-" + tag, PodSandboxId: testPod.Id, Name: "ctr",
			Image: &api.Image{Name: image, Digest: ref.DigestStr()}},
	})
	return err
}

func TestCreateContainerEnforce(t *testing.T) {
	f := loadFixture(t)
	n := startNode(t, f.writePolicy(t, "enforce"))
	tests := []struct {
		name    string
		image   string // fixture key
		allowed bool
		reason  string // a fragment of the denial only this case produces
	}{
		{"signed", "signed", true, ""},
		{"unsigned", "unsigned", false, "no signatures"},
		{"signed with another key", "otherkey", false, "not signed by any trusted key"},
		{"signature copied from a sibling", "copied", false, "payload is for " + f.digests["signed"].DigestStr()},
		{"tampered signature", "tampered", false, "not signed by any trusted key"},
		{"tag moved after signing", "moved", false, "no signatures"},
		{"index with only its child signed", "app/index", false, "only its " + platform() + " manifest"},
		{"index child accepted by the rule", "platform/index", true, ""},
		{"allow rule", "infra", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := f.digests[tt.image]
			err := n.create(t, d, "v1")
			if tt.allowed {
				if err != nil {
					t.Fatalf("denied, want allowed: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("allowed, want denied")
			}
			t.Logf("denial: %v", err)
			want := fmt.Sprintf("sealgate: denied %s:v1@%s (rule app): ", d.Context().String(), d.DigestStr())
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\nwant it to contain %q", err, want)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q\nwant reason %q", err, tt.reason)
			}
		})
	}
	if strings.Contains(n.logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", n.logs.String())
	}
}

// The tampered and other-key cases share a reason fragment; make sure the
// tampered signature is rejected for its bytes, not for its key.
func TestTamperedDiffersFromUnsigned(t *testing.T) {
	f := loadFixture(t)
	n := startNode(t, f.writePolicy(t, "enforce"))
	for _, k := range []string{"tampered", "unsigned", "copied"} {
		err := n.create(t, f.digests[k], "v1")
		if err == nil {
			t.Fatalf("%s: allowed", k)
		}
		if k != "unsigned" && strings.Contains(err.Error(), "no signatures") {
			t.Errorf("%s: reported as unsigned: %v", k, err)
		}
	}
}

func TestWarnAndAuditModesAllow(t *testing.T) {
	f := loadFixture(t)
	for _, mode := range []string{"warn", "audit"} {
		t.Run(mode, func(t *testing.T) {
			n := startNode(t, f.writePolicy(t, mode))
			if err := n.create(t, f.digests["unsigned"], "v1"); err != nil {
				t.Fatalf("%s mode denied: %v", mode, err)
			}
			logs := n.logs.String()
			if !strings.Contains(logs, "would deny in enforce mode") || !strings.Contains(logs, f.digests["unsigned"].DigestStr()) {
				t.Errorf("%s mode did not say what enforce would have done:\n%s", mode, logs)
			}
			if got := n.plugin.Stats().WouldDeny.Load(); got != 1 {
				t.Errorf("WouldDeny = %d, want 1", got)
			}
		})
	}
}

func TestSecondContainerIsCached(t *testing.T) {
	f := loadFixture(t)
	n := startNode(t, f.writePolicy(t, "enforce"))
	d := f.digests["signed"]
	if err := n.create(t, d, "v1"); err != nil {
		t.Fatal(err)
	}
	before := f.reg.Requests()
	if err := n.create(t, d, "v1"); err != nil {
		t.Fatal(err)
	}
	if after := f.reg.Requests(); after != before {
		t.Errorf("second decision made %d registry requests, want 0", after-before)
	}
	got := n.engine.Decide(context.Background(), decision.Request{Image: d.String(), Namespace: "default"})
	if got.Source != decision.SourceCache || !got.Allowed {
		t.Errorf("third decision: %+v, want allowed from cache", got)
	}
}

// A registry that does not answer must not hold the runtime: the plugin
// denies at its own deadline.
func TestDeadlineDenies(t *testing.T) {
	f := loadFixture(t)
	engine := hangingEngine(t, f)
	p, err := plugin.New(engine, plugin.WithDeadline(100*time.Millisecond), plugin.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	d := f.digests["signed"]
	start := time.Now()
	_, _, err = p.CreateContainer(context.Background(), testPod, &api.Container{Name: "c", Image: &api.Image{Name: d.Context().String() + ":v1", Digest: d.DigestStr()}})
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err = %v, want a denial naming the deadline", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("answer took %s", el)
	}
}

// hangingSource never answers until its context ends and ignores it for a
// while after, like a registry that has stopped responding.
type hangingSource struct{}

func (hangingSource) Signatures(ctx context.Context, _ name.Digest) ([]artifact.Signature, error) {
	<-ctx.Done()
	time.Sleep(2 * time.Second)
	return nil, ctx.Err()
}

func (hangingSource) Attestations(ctx context.Context, _ name.Digest) ([]artifact.Attestation, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (hangingSource) Bundles(ctx context.Context, _ name.Digest) ([]artifact.Bundle, error) {
	<-ctx.Done()
	time.Sleep(2 * time.Second)
	return nil, ctx.Err()
}

func (hangingSource) Describe(ctx context.Context, _ name.Digest) (artifact.Manifest, error) {
	<-ctx.Done()
	return artifact.Manifest{}, ctx.Err()
}

// hangingEngine decides with the fixture's policy and a source that hangs.
func hangingEngine(t *testing.T, f *fixture) *decision.Engine {
	t.Helper()
	pol, err := policy.Load(f.writePolicy(t, "enforce"))
	if err != nil {
		t.Fatal(err)
	}
	engine := engineOver(t, pol, hangingSource{})
	return engine
}

func TestNewValidatesOptions(t *testing.T) {
	engine := hangingEngine(t, loadFixture(t))
	for _, opt := range []plugin.Option{plugin.WithDeadline(0), plugin.WithPluginIndex("1"), plugin.WithPluginName(""), plugin.WithSocketPath("")} {
		if _, err := plugin.New(engine, opt); err == nil {
			t.Errorf("New accepted a bad option")
		}
	}
	if _, err := plugin.New(nil); err == nil {
		t.Error("New accepted a nil decider")
	}
}

func platform() string { return "linux/" + runtime.GOARCH }

// imageStore stands in for containerd's image and container stores (the
// real one is exercised in integration/): it maps names to digests and pods
// to sandbox images.
type imageStore struct {
	digests   map[string]string
	sandboxes map[string]string
}

func (s imageStore) ImageDigest(_ context.Context, name string) (string, error) {
	if d, ok := s.digests[name]; ok {
		return d, nil
	}
	return "", fmt.Errorf("image %q: not found", name)
}

func (s imageStore) SandboxImage(ctx context.Context, podID string) (string, string, error) {
	img, ok := s.sandboxes[podID]
	if !ok {
		return "", "", fmt.Errorf("sandbox %q: not found", podID)
	}
	d, err := s.ImageDigest(ctx, img)
	return img, d, err
}

func TestRunPodSandboxChecksSandboxImage(t *testing.T) {
	f := loadFixture(t)
	pause := f.digests["infra"].Context().String() + ":3.10"
	unsigned := f.digests["unsigned"].Context().String() + ":v1"
	store := imageStore{
		digests:   map[string]string{pause: f.digests["infra"].DigestStr(), unsigned: f.digests["unsigned"].DigestStr()},
		sandboxes: map[string]string{"good": pause, "bad": unsigned},
	}
	n := startNode(t, f.writePolicy(t, "enforce"), plugin.WithResolver(store))
	tests := []struct {
		pod    string
		reason string // empty: allowed
	}{
		{"good", ""},
		{"bad", "no signatures found"},
		{"unknown", "cannot find the sandbox image"},
	}
	for _, tt := range tests {
		err := n.rt.RunPodSandbox(context.Background(), &api.RunPodSandboxRequest{Pod: &api.PodSandbox{Id: tt.pod, Name: tt.pod, Namespace: "default"}})
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("pod %s: denied: %v", tt.pod, err)
		case tt.reason != "" && (err == nil || !strings.Contains(err.Error(), tt.reason)):
			t.Errorf("pod %s: err = %v, want %q", tt.pod, err, tt.reason)
		}
	}
}

// An older runtime sends no api.Image: the name comes from the CRI
// annotation and the digest from the runtime's image store, never from a tag
// at the registry.
func TestCreateContainerWithoutImageDigest(t *testing.T) {
	f := loadFixture(t)
	signed := f.digests["signed"].Context().String() + ":v1"
	unsigned := f.digests["unsigned"].Context().String() + ":v1"
	store := imageStore{digests: map[string]string{signed: f.digests["signed"].DigestStr(), unsigned: f.digests["unsigned"].DigestStr()}}
	n := startNode(t, f.writePolicy(t, "enforce"), plugin.WithResolver(store))
	tests := []struct {
		name        string
		annotations map[string]string
		image       *api.Image
		reason      string
	}{
		{"name from annotation, digest from store", map[string]string{"io.kubernetes.cri.image-name": signed}, nil, ""},
		{"name only in api.Image", nil, &api.Image{Name: signed}, ""},
		{"unsigned via store", map[string]string{"io.kubernetes.cri.image-name": unsigned}, nil, "no signatures found"},
		{"name unknown to the store", map[string]string{"io.kubernetes.cri.image-name": "example.com/x:1"}, nil, "image store has none"},
		{"no image at all", nil, nil, "sent no image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: testPod,
				Container: &api.Container{Id: "c", PodSandboxId: testPod.Id, Name: "c", Annotations: tt.annotations, Image: tt.image}})
			switch {
			case tt.reason == "" && err != nil:
				t.Errorf("denied: %v", err)
			case tt.reason != "" && (err == nil || !strings.Contains(err.Error(), tt.reason)):
				t.Errorf("err = %v, want %q", err, tt.reason)
			}
		})
	}
}

// TestRegressionSignedIndexUnsignedChild: a runtime that reports the
// platform manifest's digest must not be let through by the signature over
// the index that lists it; only the index digest itself is covered.
func TestRegressionSignedIndexUnsignedChild(t *testing.T) {
	f := loadFixture(t)
	n := startNode(t, f.writePolicy(t, "enforce"))
	if err := n.create(t, f.digests["signedindex"], "v1"); err != nil {
		t.Fatalf("signed index denied: %v", err)
	}
	child := f.digests["signedindex/child"]
	err := n.create(t, child, "v1")
	if err == nil || !strings.Contains(err.Error(), "no signatures found") || !strings.Contains(err.Error(), child.DigestStr()) {
		t.Fatalf("unsigned child of a signed index: err = %v, want a denial for %s", err, child.DigestStr())
	}
}

// TestSynchronizeVerifiesAhead: the images of containers that already run
// when the plugin connects are verified in the background, so the next
// container of one of them is decided from the cache.
func TestSynchronizeVerifiesAhead(t *testing.T) {
	f := loadFixture(t)
	d := f.digests["signed"]
	ctrs := []*api.Container{{Id: "running", PodSandboxId: testPod.Id, Name: "running",
		Image: &api.Image{Name: d.Context().String() + ":v1", Digest: d.DigestStr()}}}
	n := startNodeWith(t, f.writePolicy(t, "enforce"), []*api.PodSandbox{testPod}, ctrs)
	req := decision.Request{Image: d.Context().String() + ":v1", Digest: d.DigestStr(), Namespace: testPod.Namespace}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if !strings.Contains(n.logs.String(), "decided ahead of time") {
			if time.Now().After(deadline) {
				t.Fatalf("no ahead-of-time decision; log:\n%s", n.logs.String())
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		break
	}
	before := f.reg.Requests()
	if got := n.engine.Decide(context.Background(), req); got.Source != decision.SourceCache || !got.Allowed {
		t.Errorf("decision after Synchronize: %+v, want allowed from cache", got)
	}
	if f.reg.Requests() != before {
		t.Errorf("decision after Synchronize asked the registry")
	}
}

// TestDecisionLogThroughNRI: every decision made through NRI's runtime side
// is one line of the hash-chained decision log, with the runtime, pod,
// container, image, digest, rule, verdict, source, what satisfied it and
// the trust generation, and the chain verifies.
func TestDecisionLogThroughNRI(t *testing.T) {
	f := loadFixture(t)
	path := filepath.Join(t.TempDir(), "decisions.log")
	w, err := decisionlog.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	n := startNode(t, f.writePolicy(t, "enforce"), plugin.WithDecisionLog(w, func() uint64 { return 7 }))
	signed, unsigned := f.digests["signed"], f.digests["unsigned"]
	if err := n.create(t, signed, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := n.create(t, unsigned, "v1"); err == nil {
		t.Fatal("unsigned image allowed")
	}
	if err := n.create(t, signed, "v1"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	head, err := decisionlog.ReadHead(path + ".head")
	if err != nil {
		t.Fatal(err)
	}
	// startNode's own probe container, then the three above.
	if n, err := decisionlog.Verify([]string{path}, head); err != nil || n != 4 {
		t.Fatalf("%d lines, %v", n, err)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
	var got []decisionlog.Entry
	for _, l := range lines {
		var e decisionlog.Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	want := []struct{ verdict, source, digest string }{
		{"allow", decision.SourceVerified, signed.DigestStr()},
		{"deny", decision.SourceVerified, unsigned.DigestStr()},
		{"allow", decision.SourceCache, signed.DigestStr()},
	}
	for i, w := range want {
		e := got[i]
		if e.Verdict != w.verdict || e.Source != w.source || e.Digest != w.digest || e.Generation != 7 || e.Runtime != "test-runtime 2.4.2" ||
			e.Pod != testPod.Name || e.Namespace != testPod.Namespace || e.Container != "ctr" || e.Rule == "" || e.Mode != "enforce" || e.Time.IsZero() {
			t.Errorf("line %d: %+v, want verdict %s, source %s, digest %s", i+1, e, w.verdict, w.source, w.digest)
		}
	}
	if len(got[0].SatisfiedBy) != 1 || got[0].SatisfiedBy[0].KeyID == "" || len(got[1].Reasons) == 0 {
		t.Errorf("what satisfied the allow or why the deny is missing: %+v / %+v", got[0], got[1])
	}
}

// TestWarningsOncePerCause: plugins made for successive connections share
// their warnings, so a cause (here: no containerd connection) is said once,
// not at every reconnection.
func TestWarningsOncePerCause(t *testing.T) {
	f := loadFixture(t)
	pol, err := policy.Load(f.writePolicy(t, "enforce"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.NewRegistry(source.WithHostsDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	e := engineOver(t, pol, src)
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	shared := &plugin.Warnings{}
	for range 3 {
		if _, err := plugin.New(e, plugin.WithLogger(log), plugin.WithWarnings(shared)); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "no containerd connection"); n != 1 {
		t.Errorf("said %d times over three connections, want once:\n%s", n, logs.String())
	}
	// Without shared warnings each plugin says it (the old behaviour).
	logs.Reset()
	for range 2 {
		if _, err := plugin.New(e, plugin.WithLogger(log)); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "no containerd connection"); n != 2 {
		t.Errorf("said %d times by two unshared plugins, want 2", n)
	}
}
