//go:build integration

package integration

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestMirrorWithUpstreamDown: the node pulls an upstream registry's image
// through a hosts.toml mirror (a pull-through cache that also holds the
// signatures, made for the upstream name), and the upstream is down. The
// signed image is allowed, and the decision names the mirror that served
// the signature; an unsigned image on the same mirror is refused. Real
// containerd (which pulls through the mirror) and cosign.
func TestMirrorWithUpstreamDown(t *testing.T) {
	f := newFixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstream := l.Addr().String()
	l.Close() // nothing listens: the upstream is down
	if err := testenv.WriteHostsToml(f.hostsDir, upstream, f.reg.Addr); err != nil {
		t.Fatal(err)
	}
	mirrored := pushBusybox(t, f.reg, "apps/mirrored:v1", "mirrored", "sleep", "3600")
	cosign := testenv.NewCosign(t)
	priv, pub, err := cosign.GenerateKeyPair("upstream")
	if err != nil {
		t.Fatal(err)
	}
	// Signed for the upstream name, stored on the mirror.
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
	c := f.node(t)
	s := startSealgate(t, f, c)
	if _, out, err := c.Run(upstream+"/apps/mirrored:v1", "mirrored", "default"); err != nil {
		t.Fatalf("signed image behind a mirror refused with the upstream down: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	waitLog(t, s, 5*time.Second, "image="+upstream+"/apps/mirrored", "source=verified", "served by mirror "+f.reg.Addr)
	if _, out, err := c.Run(upstream+"/apps/unsigned:v1", "unsigned", "default"); err == nil || !strings.Contains(out, "sealgate: denied") {
		t.Fatalf("unsigned image behind the mirror not refused by sealgate: %v\n%s", err, out)
	}
}
