//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestLiveReseal: on a sealed node, files the policy does not name (an
// editor's swap file, an example) change nothing; a key rotated in with
// `sealgate trust seal` takes effect at once, without a restart and with
// the NRI connection kept: an image signed only by the new key runs right
// after. A change that was not sealed is refused, logged and counted, on a
// change of the files and on SIGHUP, and the sealed policy keeps deciding.
// Real containerd, runc, crictl, cosign and swtpm.
func TestLiveReseal(t *testing.T) {
	n := newSealedNode(t, time.Hour)
	rotated := pushBusybox(t, n.f.reg, "apps/rotated:v1", "rotated", "sleep", "3600")
	cosign := testenv.NewCosign(t)
	priv, pub, err := cosign.GenerateKeyPair("next")
	if err != nil {
		t.Fatal(err)
	}
	if err := cosign.Sign(priv, rotated.String()); err != nil {
		t.Fatal(err)
	}
	rotatedTag := n.f.reg.Ref("apps/rotated:v1")

	s := n.start(t)
	connections := n.c.PluginConnections("sealgate")
	if out, err := n.run(t, rotatedTag, "before"); err == nil {
		t.Fatalf("an image signed by a key the policy does not name ran:\n%s", out)
	}

	// Not sealed, not read: nothing happens.
	writeFile(t, filepath.Join(n.trustDir, ".policy.yaml.swp"), "vim swap file")
	writeFile(t, filepath.Join(n.trustDir, "policy.example.yaml"), "# an example, changed by an upgrade\n")
	time.Sleep(2 * time.Second) // two looks at the sealed files
	if strings.Contains(s.log(), "RELOAD") || strings.Contains(s.log(), "reloading") {
		t.Errorf("files the policy does not name made sealgate reload:\n%s", s.log())
	}

	// Rotate the new key in and seal: the running daemon takes it.
	copyFile(t, pub, filepath.Join(n.trustDir, "keys", "next.pub"))
	writeFile(t, n.f.policy, strings.Replace(readFile(t, n.f.policy), "        - key: keys/release.pub\n", "        - key: keys/release.pub\n        - key: keys/next.pub\n", 1))
	out := n.sealgate(t, "trust", "seal", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec, "--gate-socket", s.gateSocket)
	if !strings.Contains(out, "the running sealgate now enforces generation 2") {
		t.Fatalf("trust seal did not report the daemon taking the new seal:\n%s\nsealgate log:\n%s", out, s.log())
	}
	if out, err := n.run(t, rotatedTag, "after"); err != nil {
		t.Fatalf("an image signed by the rotated-in key was refused after the re-seal: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	if out, err := n.run(t, n.f.signedTag, "still"); err != nil {
		t.Fatalf("the image signed by the old key was refused after the re-seal: %v\n%s", err, out)
	}
	if got := n.c.PluginConnections("sealgate"); got != connections {
		t.Errorf("sealgate connected to containerd %d more times during the reload; the connection must be kept", got-connections)
	}
	if strings.Contains(s.log(), "disconnected from the runtime") {
		t.Errorf("the NRI connection dropped during the reload:\n%s", s.log())
	}
	waitLog(t, s, 5*time.Second, "trust store reloaded", "generation=2")

	// A change nobody sealed: refused, counted, and the sealed policy
	// keeps deciding (the unsigned image stays refused).
	writeFile(t, n.f.policy, strings.Replace(readFile(t, n.f.policy), "default: deny", "default: allow", 1)+"  - name: everything\n    images: [\"**\"]\n    action: allow\n")
	waitLog(t, s, 10*time.Second, "RELOAD REFUSED", "policy.yaml was changed", "generation=2")
	s.signal(t, syscall.SIGHUP)
	waitLog(t, s, 10*time.Second, "reload asked for")
	if out, err := n.run(t, n.f.unsignedTag, "unsealed"); err == nil {
		t.Fatalf("an unsigned image ran under a policy change nobody sealed:\n%s\nsealgate log:\n%s", out, s.log())
	}
	if got := strings.Count(s.log(), "RELOAD REFUSED"); got < 2 {
		t.Errorf("%d refused reloads logged, want one for the change and one for SIGHUP:\n%s", got, s.log())
	}
	if out, err := n.run(t, rotatedTag, "kept"); err != nil {
		t.Fatalf("the sealed snapshot stopped deciding after a refused reload: %v\n%s", err, out)
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRevocationListsRunning: a container runs an image signed by a key the
// sealed policy trusts; the key is revoked (removed and re-sealed) while it
// runs. The daemon takes the new seal and names that container, by pod and
// container, in its log, in /status on the metrics socket and in `sealgate
// doctor`; a container of an image the new policy still allows is not named.
// Real containerd, runc, crictl, cosign and swtpm.
func TestRevocationListsRunning(t *testing.T) {
	n := newSealedNode(t, time.Hour)
	revoked := pushBusybox(t, n.f.reg, "apps/revoked:v1", "revoked", "sleep", "3600")
	cosign := testenv.NewCosign(t)
	priv, pub, err := cosign.GenerateKeyPair("old")
	if err != nil {
		t.Fatal(err)
	}
	if err := cosign.Sign(priv, revoked.String()); err != nil {
		t.Fatal(err)
	}
	copyFile(t, pub, filepath.Join(n.trustDir, "keys", "old.pub"))
	withOld := strings.Replace(readFile(t, n.f.policy), "        - key: keys/release.pub\n", "        - key: keys/release.pub\n        - key: keys/old.pub\n", 1)
	writeFile(t, n.f.policy, withOld)
	n.sealgate(t, "trust", "seal", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec)

	s := n.start(t)
	if out, err := n.run(t, n.f.reg.Ref("apps/revoked:v1"), "old-signed"); err != nil {
		t.Fatalf("image signed by a trusted key refused: %v\n%s", err, out)
	}
	if out, err := n.run(t, n.f.signedTag, "release-signed"); err != nil {
		t.Fatalf("signed image refused: %v\n%s", err, out)
	}
	// One more of the old key's image, removed before the revocation: the
	// runtime no longer runs it, so it must not be named.
	gone, out, err := n.c.Run(n.f.reg.Ref("apps/revoked:v1"), "gone", "default")
	if err != nil {
		t.Fatalf("image signed by a trusted key refused: %v\n%s", err, out)
	}
	if out, err := n.c.Crictl("rm", "-f", gone); err != nil {
		t.Fatalf("crictl rm: %v\n%s", err, out)
	}

	// Revoke the old key.
	writeFile(t, n.f.policy, strings.Replace(withOld, "        - key: keys/old.pub\n", "", 1))
	if err := os.Remove(filepath.Join(n.trustDir, "keys", "old.pub")); err != nil {
		t.Fatal(err)
	}
	out = n.sealgate(t, "trust", "seal", "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec, "--gate-socket", s.gateSocket)
	if !strings.Contains(out, "the running sealgate now enforces generation 3") {
		t.Fatalf("trust seal did not report the daemon taking the new seal:\n%s\nsealgate log:\n%s", out, s.log())
	}
	waitLog(t, s, 30*time.Second, "a running container's image is not allowed by the policy", `why="trust generation 3"`, "pod=default/old-signed", "container=old-signed", revoked.DigestStr())
	waitLog(t, s, 30*time.Second, "running containers the policy would deny", `why="trust generation 3"`, "count=1")
	for _, line := range strings.Split(s.log(), "\n") {
		if strings.Contains(line, "not allowed by the policy") && (strings.Contains(line, "pod=default/release-signed") || strings.Contains(line, "pod=default/gone")) {
			t.Errorf("a container that the new policy allows, or that is gone, was named: %s", line)
		}
	}

	// /status on the metrics socket beside the gate socket.
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(filepath.Dir(s.gateSocket), "metrics.sock"))
	}}}
	resp, err := client.Get("http://sealgate/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		TrustGeneration int `json:"trustGeneration"`
		Unverified      int `json:"unverifiedRunning"`
		Containers      []struct {
			Namespace, Pod, Container, Digest string
		} `json:"unverifiedContainers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.TrustGeneration != 3 || st.Unverified != 1 || len(st.Containers) != 1 || st.Containers[0].Pod != "old-signed" ||
		st.Containers[0].Container != "old-signed" || st.Containers[0].Namespace != "default" || st.Containers[0].Digest != revoked.DigestStr() {
		t.Errorf("/status: %+v, want generation 3 and the one container of the revoked key", st)
	}

	// doctor names it (its other checks fail on this node without the
	// runtime gate installed; only this one matters here).
	doc, _ := sealgateCmd(t, "doctor", "--gate-socket", s.gateSocket, "--containerd-bin", containerdBin(t),
		"--containerd-config", n.c.ConfigPath(), "--trust-dir", n.trustDir, "--tpm", n.tpm.Spec, "--wait", "10s")
	if !strings.Contains(doc, "FAIL running containers") || !strings.Contains(doc, "pod default/old-signed container old-signed image") ||
		strings.Contains(doc, "pod default/release-signed") {
		t.Errorf("doctor does not name exactly the container of the revoked key:\n%s", doc)
	}
}
