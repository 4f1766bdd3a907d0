package plugin_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/nri/pkg/api"

	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/decision"
)

// swapDecider decides with the engine in force, as the node does across
// re-seals.
type swapDecider struct {
	cur atomic.Pointer[decision.Engine]
}

func (s *swapDecider) Decide(ctx context.Context, req decision.Request) decision.Decision {
	return s.cur.Load().Decide(ctx, req)
}
func (s *swapDecider) Quick(req decision.Request) (decision.Decision, bool) {
	return s.cur.Load().Quick(req)
}
func (s *swapDecider) Refuse(req decision.Request, reason string) decision.Decision {
	return s.cur.Load().Refuse(req, reason)
}

// runningList is the runtime's list of running containers, as the
// plugin's resolver reports it (containerd's tasks in production).
type runningList struct{ ids map[string]bool }

func (r *runningList) ImageDigest(context.Context, string) (string, error) {
	return "", errors.New("not in this test")
}
func (r *runningList) SandboxImage(context.Context, string) (string, string, error) {
	return "", "", errors.New("not in this test")
}
func (r *runningList) RunningContainers(context.Context) (map[string]bool, error) { return r.ids, nil }

// TestRevocationListsRunning: containers are allowed through NRI's real
// runtime side under a policy trusting the release key; some are gone
// since (the runtime's list no longer has them); then the release key is
// revoked (the policy now trusts another key) and the plugin re-evaluates:
// exactly the running container of the revoked key is listed, by pod and
// container, in Unverified and in the log.
func TestRevocationListsRunning(t *testing.T) {
	f := loadFixture(t)
	before := f.writePolicy(t, "enforce")
	text, err := os.ReadFile(before)
	if err != nil {
		t.Fatal(err)
	}
	after := filepath.Join(t.TempDir(), "revoked.yaml")
	if err := os.WriteFile(after, []byte(strings.ReplaceAll(string(text), "release.pub", "other.pub")), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &swapDecider{}
	first := newEngine(t, before)
	d.cur.Store(first)
	// One container already runs when the plugin connects (Synchronize).
	pod := &api.PodSandbox{Id: "pod-web", Name: "web", Uid: "uid-web", Namespace: "shop"}
	signed, infra := f.digests["signed"], f.digests["infra"]
	early := &api.Container{Id: "c-early", PodSandboxId: pod.Id, Name: "early", State: api.ContainerState_CONTAINER_RUNNING,
		Image: &api.Image{Name: signed.Context().String() + ":v1", Digest: signed.DigestStr()}}
	running := &runningList{}
	n := startNodeDecider(t, []*api.PodSandbox{pod}, []*api.Container{early}, d, first, plugin.WithResolver(running))

	create := func(id, name string, img string, digest string) *api.Container {
		t.Helper()
		c := &api.Container{Id: id, PodSandboxId: pod.Id, Name: name, Image: &api.Image{Name: img, Digest: digest}}
		if _, err := n.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: pod, Container: c}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return c
	}
	create("c-app", "app", signed.Context().String()+":v1", signed.DigestStr())
	create("c-sidecar", "sidecar", infra.Context().String()+":v1", infra.DigestStr())
	create("c-gone", "job", signed.Context().String()+":v1", signed.DigestStr())
	running.ids = map[string]bool{"c-early": true, "c-app": true, "c-sidecar": true, "probe": true}

	n.plugin.Reevaluate("trust generation 1")
	if u := n.plugin.Unverified(); len(u) != 0 {
		t.Fatalf("before the revocation: %+v listed", u)
	}

	d.cur.Store(newEngine(t, after))
	n.plugin.Reevaluate("trust generation 2")
	u := n.plugin.Unverified()
	if len(u) != 2 {
		t.Fatalf("after the revocation: %d listed, want the two running containers of the revoked key: %+v\nlog:\n%s", len(u), u, n.logs.String())
	}
	for i, want := range []string{"app", "early"} {
		got := u[i]
		if got.ID != "c-"+want || got.Namespace != "shop" || got.Pod != "web" || got.Container != want || got.Digest != signed.DigestStr() || len(got.Reasons) == 0 {
			t.Errorf("listed %+v, want shop/web container %s of %s with the reasons", got, want, signed.DigestStr())
		}
	}
	logs := n.logs.String()
	for _, want := range []string{`msg="a running container's image is not allowed by the policy" why="trust generation 2" pod=shop/web container=app`,
		`msg="running containers the policy would deny" why="trust generation 2" count=2`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}

	// The pod goes: nothing is listed any more at the next change.
	running.ids = map[string]bool{}
	n.plugin.Reevaluate("trust generation 3")
	if u := n.plugin.Unverified(); len(u) != 0 {
		t.Errorf("after the pod was removed: %+v listed", u)
	}
}
