package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDocExamples parses every YAML example of docs/policy.md, so that the
// documentation cannot drift from the parser: whole policies through Parse
// (with the files they name), `conditions:` snippets through the CEL
// compiler, `authorities:` snippets inside a rule.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for dst, src := range map[string]string{
		"keys/release.pub":        "keys/ed25519.pub",
		"keys/ci.pub":             "keys/ecdsa-p256.pub",
		"keys/legacy.pub":         "keys/rsa2048.pub",
		"keys/rekor.pub":          "keys/rekor.pub",
		"roots/trusted_root.json": "roots/trusted_root.json",
		"ca/root.pem":             "ca/root.pem",
		"ca/intermediate.pem":     "ca/intermediate.pem",
	} {
		data, err := os.ReadFile(filepath.Join("testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(dst)), 0o700); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, dst), data)
	}
	policyPath := filepath.Join(dir, "policy.yaml")

	var policies, conditions, authorities int
	blocks := strings.Split(string(doc), "```yaml\n")
	for i, b := range blocks[1:] {
		block, _, ok := strings.Cut(b, "```")
		if !ok {
			t.Fatalf("yaml block %d is not closed", i)
		}
		switch first := strings.SplitN(block, "\n", 2)[0]; {
		case strings.HasPrefix(first, "conditions:"):
			var v struct{ Conditions []string }
			if err := yaml.Unmarshal([]byte(block), &v); err != nil || len(v.Conditions) == 0 {
				t.Fatalf("block %d: %v\n%s", i, err, block)
			}
			for _, c := range v.Conditions {
				if _, err := compileCondition(c); err != nil {
					t.Errorf("block %d: condition %q: %v", i, c, err)
				}
				conditions++
			}
		case strings.HasPrefix(first, "authorities:"):
			indented := "    " + strings.ReplaceAll(strings.TrimSpace(block), "\n", "\n    ")
			data := "trustedRoot: roots/trusted_root.json\nrules:\n- name: a\n  images: [x.io/a]\n  signatures:\n" + indented + "\n"
			if _, err := Parse(policyPath, []byte(data)); err != nil {
				t.Errorf("block %d: %v\n%s", i, err, data)
			}
			authorities++
		default:
			if _, err := Parse(policyPath, []byte(block)); err != nil {
				t.Errorf("block %d: %v\n%s", i, err, block)
			}
			policies++
		}
	}
	if policies < 3 || conditions < 3 || authorities < 1 {
		t.Errorf("found %d policies, %d conditions, %d authority lists in docs/policy.md; examples went missing", policies, conditions, authorities)
	}
}
