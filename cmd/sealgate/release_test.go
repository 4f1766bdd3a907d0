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
