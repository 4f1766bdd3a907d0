package plugin_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/runtimegate"
)

// TestRuntimeGateAnswersFromNRIDecisions drives the plugin over NRI's own
// runtime side, then asks its runtime gate, over the real socket, as the
// runc wrapper does: the container NRI allowed is allowed, the one it
// denied is refused with the same reason, and a container NRI never asked
// about, or a spec naming another image, is refused.
func TestRuntimeGateAnswersFromNRIDecisions(t *testing.T) {
	f := loadFixture(t)
	gate := plugin.NewGate(nil, nil, time.Second, nil)
	n := startNode(t, f.writePolicy(t, "enforce"), plugin.WithGate(gate))
	sock := filepath.Join(t.TempDir(), "run", "gate.sock")
	srv, err := runtimegate.Listen(sock, gate, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	signed, unsigned := f.digests["signed"], f.digests["unsigned"]
	createNRI := func(id, image, digest string) error {
		_, err := n.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: testPod,
			Container: &api.Container{Id: id, PodSandboxId: testPod.Id, Name: "app",
				Annotations: map[string]string{runtimegate.AnnotationImageName: image},
				Image:       &api.Image{Name: image, Digest: digest}}})
		return err
	}
	signedName, unsignedName := signed.Context().String()+":v1", unsigned.Context().String()+":v1"
	if err := createNRI("c-signed", signedName, signed.DigestStr()); err != nil {
		t.Fatalf("NRI denied the signed image: %v", err)
	}
	if err := createNRI("c-unsigned", unsignedName, unsigned.DigestStr()); err == nil {
		t.Fatal("NRI allowed the unsigned image")
	}
	if err := createNRI("c-swapped", signedName, signed.DigestStr()); err != nil {
		t.Fatal(err)
	}

	g := runtimegate.Gate{Socket: sock, Timeout: 2 * time.Second}
	tests := []struct {
		name, id, image string
		allowed         bool
		reason          string
	}{
		{"allowed by NRI", "c-signed", signedName, true, ""},
		{"denied by NRI", "c-unsigned", unsignedName, false, "no signatures found"},
		{"never asked", "c-other", signedName, false, "no decision for this container"},
		{"spec names another image", "c-swapped", unsignedName, false, "decided on image"},
		{"record used once", "c-signed", signedName, false, "no decision for this container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle := t.TempDir()
			spec, _ := json.Marshal(map[string]any{"annotations": map[string]string{
				runtimegate.AnnotationContainerType: runtimegate.KindContainer, runtimegate.AnnotationSandboxID: testPod.Id,
				runtimegate.AnnotationImageName: tt.image, runtimegate.AnnotationContainerName: "app"}})
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), spec, 0o600); err != nil {
				t.Fatal(err)
			}
			v := g.Decide(runtimegate.Invocation{Command: "create", Bundle: bundle, ID: tt.id})
			if v.Allowed != tt.allowed || (!tt.allowed && !strings.Contains(v.Message, tt.reason)) {
				t.Errorf("Decide = %+v, want allowed %v with %q", v, tt.allowed, tt.reason)
			}
		})
	}
	if st := gate.Status(); st.Checks != int64(len(tests)) || st.Refusals != int64(len(tests)-1) {
		t.Errorf("status counts %d checks, %d refusals; want %d, %d", st.Checks, st.Refusals, len(tests), len(tests)-1)
	}

	// A sandbox cannot be checked without the runtime's image store.
	a := gate.Check(context.Background(), runtimegate.Request{Op: runtimegate.OpCheck, ID: "pod1", Kind: runtimegate.KindSandbox, Image: "pause:1"})
	if a.Allowed || !strings.Contains(a.Reason, "containerd") {
		t.Errorf("sandbox without a resolver: %+v, want a refusal", a)
	}
	// Not a CRI container at all.
	a = gate.Check(context.Background(), runtimegate.Request{Op: runtimegate.OpCheck, ID: "x"})
	if a.Allowed {
		t.Errorf("container without a kind allowed: %+v", a)
	}
}

// TestRuntimeGateEscape: the escape annotation lets a container NRI did not
// ask about start only while sealgate is not connected to the runtime (NRI's
// validator lets it by then); while connected, it is no escape.
func TestRuntimeGateEscape(t *testing.T) {
	f := loadFixture(t)
	gate := plugin.NewGate(nil, nil, time.Second, nil)
	req := runtimegate.Request{Op: runtimegate.OpCheck, ID: "static", Kind: runtimegate.KindContainer, Image: "x:1", Escape: true}
	if a := gate.Check(context.Background(), req); !a.Allowed {
		t.Errorf("escape while not connected: %+v, want allowed", a)
	}
	startNode(t, f.writePolicy(t, "enforce"), plugin.WithGate(gate))
	if a := gate.Check(context.Background(), req); a.Allowed {
		t.Errorf("escape while connected, no decision: %+v, want refused", a)
	}
	req.Escape = false
	if a := gate.Check(context.Background(), req); a.Allowed {
		t.Errorf("no escape, no decision: %+v, want refused", a)
	}
}
