package plugin_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/sealgate/sealgate/plugin"
)

// TestRegressionDeadlineUsesRuleMode: a registry that accepts connections
// and never answers (a stalled node, a black-holed network) makes every
// decision run into the plugin's deadline. The denial then follows the
// matched rule's mode, not the policy's: an enforce rule in a warn policy
// (the starter policy's shape) denies, and a warn rule in an enforce policy
// allows. Through NRI's own runtime side.
func TestRegressionDeadlineUsesRuleMode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	hung := ln.Addr().String()
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ policyMode, ruleMode string }{{"warn", "enforce"}, {"enforce", "warn"}} {
		t.Run(tc.ruleMode+" rule in "+tc.policyMode+" policy", func(t *testing.T) {
			f := loadFixture(t)
			pol := filepath.Join(t.TempDir(), "policy.yaml")
			text := fmt.Sprintf("mode: %s\ndefault: deny\nrules:\n  - name: stalled\n    mode: %s\n    images: [\"%s/**\"]\n    signatures:\n      authorities: [{key: %s}]\n",
				tc.policyMode, tc.ruleMode, hung, filepath.Join(f.dir, "release.pub"))
			if err := os.WriteFile(pol, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			n := startNode(t, pol, plugin.WithDeadline(300*time.Millisecond))
			_, err := n.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: testPod,
				Container: &api.Container{Id: "c", PodSandboxId: testPod.Id, Name: "c",
					Image: &api.Image{Name: hung + "/app:v1", Digest: digest}}})
			switch tc.ruleMode {
			case "enforce":
				if err == nil || !strings.Contains(err.Error(), "(rule stalled)") {
					t.Errorf("enforce rule on the deadline path: err = %v, want a denial by rule stalled", err)
				}
			case "warn":
				if err != nil {
					t.Errorf("warn rule on the deadline path: err = %v, want allowed (would deny)", err)
				}
				if !strings.Contains(n.logs.String(), "would deny in enforce mode") {
					t.Errorf("warn rule: the would-be denial is not logged:\n%s", n.logs.String())
				}
			}
		})
	}
}

// TestRegressionNameCreatedFrom: NRI names an image by its first name in
// sorted order; when the same content was also pulled under another name
// (a copy), that name is not what the container was created from. The
// decision uses the CRI's image-name annotation: the signed image's
// container is allowed although NRI calls it by the copy's name.
func TestRegressionNameCreatedFrom(t *testing.T) {
	f := loadFixture(t)
	n := startNode(t, f.writePolicy(t, "enforce"))
	signed := f.digests["signed"]
	created := signed.Context().String() + ":v1"
	copyName := f.reg.Addr + "/app/aaa-copy:v1" // sorts before the signed name
	_, err := n.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: testPod,
		Container: &api.Container{Id: "c", PodSandboxId: testPod.Id, Name: "c",
			Annotations: map[string]string{"io.kubernetes.cri.image-name": created},
			Image:       &api.Image{Name: copyName, Digest: signed.DigestStr()}}})
	if err != nil {
		t.Errorf("signed image created from %s, named %s by NRI: %v", created, copyName, err)
	}
}
