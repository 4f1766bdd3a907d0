package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testenv"
)

// TestReleaseBinaryIsLean: the binary is built as released (make build:
// no cgo) and links no test-only code: no TPM simulator, none of the
// project's test helpers.
func TestReleaseBinaryIsLean(t *testing.T) {
	bin := testenv.BuildSealgate(t)
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	info := string(out)
	if !strings.Contains(info, "CGO_ENABLED=0") {
		t.Errorf("the binary is built with cgo:\n%s", info)
	}
	for _, module := range []string{"github.com/google/go-tpm-tools", "github.com/google/go-tpm-tools/simulator"} {
		if strings.Contains(info, "\t"+module+"\t") {
			t.Errorf("the binary links %s (the TPM simulator)", module)
		}
	}
	deps, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, deps)
	}
	for _, pkg := range strings.Fields(string(deps)) {
		switch {
		case strings.HasPrefix(pkg, "github.com/sealgate/sealgate/") && (strings.HasSuffix(pkg, "test") || strings.Contains(pkg, "/testenv") || strings.Contains(pkg, "tpmsim")),
			pkg == "net/http/httptest", strings.HasPrefix(pkg, "github.com/google/go-tpm-tools"):
			t.Errorf("the binary links the test-only package %s", pkg)
		}
	}
	if !strings.Contains(string(deps), "github.com/sealgate/sealgate/tpm\n") {
		t.Error("go list -deps does not list the tpm package: the check looks at the wrong thing")
	}
}

// TestDaemonBinaryLinksNoVerifier: the binary sealgate run becomes links
// the gate, the verdicts and the TPM, and none of what fetches and
// verifies (that is the verifier process's): the point of the split is a
// small resident daemon.
func TestDaemonBinaryLinksNoVerifier(t *testing.T) {
	deps, err := exec.Command("go", "list", "-deps", "../sealgate-daemon").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, deps)
	}
	linked := map[string]bool{}
	for _, pkg := range strings.Fields(string(deps)) {
		linked[pkg] = true
	}
	for _, pkg := range []string{"github.com/sealgate/sealgate/plugin/node", "github.com/sealgate/sealgate/plugin/checkproc", "github.com/sealgate/sealgate/tpm"} {
		if !linked[pkg] {
			t.Errorf("the daemon binary does not link %s: the check looks at the wrong thing", pkg)
		}
	}
	for pkg := range linked {
		for _, banned := range []string{"github.com/sigstore/sigstore-go/", "github.com/google/go-containerregistry/pkg/v1/remote", "github.com/containers/image/",
			"github.com/sealgate/sealgate/plugin/check", "github.com/sealgate/sealgate/plugin/source", "github.com/sealgate/sealgate/plugin/verify",
			"github.com/sealgate/sealgate/plugin/node/verifier", "github.com/sealgate/sealgate/plugin/credentials", "github.com/sealgate/sealgate/plugin/bundlestore"} {
			if (pkg == banned || strings.HasPrefix(pkg, banned)) && pkg != "github.com/sealgate/sealgate/plugin/checkproc" {
				t.Errorf("the daemon binary links %s, which only the verifier needs", pkg)
			}
		}
	}
}
