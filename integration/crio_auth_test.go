//go:build integration

package integration

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestCRIOAuthFile: a private registry, its credentials in the auth file
// CRI-O's configuration names (global_auth_file, set in a drop-in). CRI-O
// pulls with it; sealgate, reading CRI-O's configuration, reads the
// signatures with the same file: the signed image runs. With CRI-O's
// configuration not read, sealgate cannot read them and refuses. `sealgate
// doctor` says both read the same file.
func TestCRIOAuthFile(t *testing.T) {
	f := newFixture(t)
	const user, password = "puller", "s3cret"
	f.reg.RequireAuth(user, password)
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.json")
	writeFile(t, auth, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, f.reg.Addr, base64.StdEncoding.EncodeToString([]byte(user+":"+password))))
	c := f.crioNode(t, testenv.CRIOOptions{DropIns: map[string]string{
		"50-auth.conf": fmt.Sprintf("[crio.image]\nglobal_auth_file = %q\n", auth),
	}})
	base := []string{"--insecure-no-tpm", "--policy", f.policy, "--registry-hosts-dir", f.hostsDir, "--bundle-store", "",
		"--registry-credentials", filepath.Join(dir, "absent.json")}

	s := startSealgateCRIO(t, f, c, append(base, "--crio-config", "")...)
	if _, out, err := c.Run(f.signedTag, "without", "default"); err == nil || !strings.Contains(out, "sealgate: denied") {
		t.Fatalf("signatures of a private registry read without CRI-O's auth file: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	s.stop()

	s = startSealgateCRIO(t, f, c, append(base, "--crio-config", c.ConfigPath, "--crio-config-dir", c.ConfigDir)...)
	if _, out, err := c.Run(f.signedTag, "with", "default"); err != nil {
		t.Fatalf("signed image refused with CRI-O's auth file: %v\n%s\nsealgate log:\n%s", err, out, s.log())
	}
	// A new process: its verdicts were verified with the auth file (ahead
	// of the container, from CRI-O's image list, or at creation).
	waitLog(t, s, 5*time.Second, "msg=allowed", "image="+f.signedTag, "container=with")

	out, _ := sealgateCmd(t, "doctor", "--gate-socket", s.gateSocket, "--crio-bin", crioBin(t), "--crio-config", c.ConfigPath,
		"--crio-config-dir", c.ConfigDir, "--tpm", "none", "--wait", "10s")
	if want := "ok   registry credentials: CRI-O and sealgate read the same auth file: " + auth; !strings.Contains(out, want) {
		t.Errorf("doctor output lacks %q:\n%s", want, out)
	}
}
