package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	nri "github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestLaunchedByRuntime installs the real sealgate binary in the plugin
// folder of NRI's runtime side, which starts it the way containerd starts
// pre-installed plugins: index and name from the file name, the connection
// on fd 3. The plugin must keep the index the runtime gave it (05, not its
// default 10) and enforce the policy.
func TestLaunchedByRuntime(t *testing.T) {
	bin := testenv.BuildSealgate(t)
	reg, pub, signed, unsigned := signedFixture(t)

	dir, err := os.MkdirTemp("", "sg-launch-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pol := writeFile(t, dir, "policy.yaml", "mode: enforce\ndefault: deny\nrules:\n  - name: app\n    images: [\""+reg.Addr+"/app/**\"]\n    signatures:\n      authorities: [{key: "+pub+"}]\n")
	logFile := filepath.Join(dir, "sealgate.log")
	// The runtime passes only NRI's variables; a wrapper gives the flags.
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %q run --insecure-no-tpm --policy %q --registry-hosts-dir %q --containerd-address '' --gate-socket %q --log-level debug 2>>%q\n",
		bin, pol, filepath.Join(dir, "certs.d"), filepath.Join(dir, "gate", "gate.sock"), logFile)
	if err := os.WriteFile(filepath.Join(plugins, "05-sealgate"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}

	var rtLog testenv.SyncBuffer
	logrus.SetOutput(&rtLog)
	t.Cleanup(func() { logrus.SetOutput(os.Stderr) })
	rt, err := nri.New("test-runtime", "2.4.2",
		func(ctx context.Context, cb nri.SyncCB) error { _, err := cb(ctx, nil, nil); return err },
		func(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) { return nil, nil },
		nri.WithPluginPath(plugins), nri.WithPluginConfigPath(filepath.Join(dir, "conf.d")),
		nri.WithSocketPath(filepath.Join(dir, "nri.sock")))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(); err != nil { // waits for pre-installed plugins to register
		b, _ := os.ReadFile(logFile)
		t.Fatalf("start runtime: %v\nsealgate log:\n%s", err, b)
	}
	t.Cleanup(rt.Stop)
	if !strings.Contains(rtLog.String(), `registered as \"05-sealgate\"`) {
		t.Errorf("plugin did not keep the runtime's index 05; runtime log:\n%s", rtLog.String())
	}

	create := func(ref string, digest string) error {
		_, err := rt.CreateContainer(context.Background(), &api.CreateContainerRequest{
			Pod:       &api.PodSandbox{Id: "p", Name: "p", Namespace: "default"},
			Container: &api.Container{Id: "c", PodSandboxId: "p", Name: "c", Image: &api.Image{Name: ref, Digest: digest}},
		})
		return err
	}
	if err := create(reg.Ref("app/signed:v1"), signed.DigestStr()); err != nil {
		b, _ := os.ReadFile(logFile)
		t.Errorf("signed image denied: %v\nsealgate log:\n%s", err, b)
	}
	err = create(reg.Ref("app/unsigned:v1"), unsigned.DigestStr())
	if err == nil || !strings.Contains(err.Error(), "sealgate: denied "+reg.Ref("app/unsigned:v1")+"@"+unsigned.DigestStr()) {
		t.Errorf("unsigned image: err = %v, want sealgate's denial", err)
	}
}
