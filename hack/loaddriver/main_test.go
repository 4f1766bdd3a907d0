package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDriver runs the load driver small: the null plugin and sealgate,
// each started and driven through NRI's runtime side, against a registry
// on 127.0.0.1 with and without the referrers API. Every container is
// allowed in time, sealgate asks the registry at most three times per cold
// decision (plus the first decision's ping and referrers probe), the null
// plugin never, and the report has every figure.
func TestDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	dir := t.TempDir()
	bins := map[string]string{"sealgate": "./cmd/sealgate", "nullplugin": "./hack/nullplugin"}
	for bin, pkg := range bins {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, bin), pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	jsonOut := filepath.Join(dir, "out.json")
	var out bytes.Buffer
	err := run(config{sealgate: filepath.Join(dir, "sealgate"), null: filepath.Join(dir, "nullplugin"), images: 4, rounds: 5, repeats: 2,
		parallel: 2, referrers: "both", scheme: "bundle", deadline: defaultDeadline, jsonOut: jsonOut}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
	var results []result
	b, err := os.ReadFile(jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatal(err)
	}
	if len(results) != 4 {
		t.Fatalf("%d results, want null and sealgate for two registries", len(results))
	}
	for _, r := range results {
		if r.Denied != 0 || r.DeadlineMiss != 0 || r.WarmPerSecond <= 0 || r.ColdP50Ms <= 0 || r.WarmP50Ms <= 0 || r.PeakRSSMiB <= 0 || r.IdleRSSMiB <= 0 {
			t.Errorf("%+v: a figure is missing, or a container was refused", r)
		}
		switch {
		case r.Plugin == "null" && r.RequestsCold != 0:
			t.Errorf("the null plugin asked the registry: %+v", r)
		case r.Plugin == "sealgate" && (r.RequestsCold < 3 || r.RequestsCold > 3+2.0/4+0.01):
			t.Errorf("sealgate: %.2f registry requests per cold decision, want 3 (and the first decision's ping and probe)", r.RequestsCold)
		}
	}
	if !strings.Contains(out.String(), "warm throughput") {
		t.Errorf("no comparison in the report:\n%s", out.String())
	}
}
