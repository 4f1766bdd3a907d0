package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/help")

// commandPaths lists every command of the tree, by the words that run it.
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	code := 0
	root := newRoot(io.Discard, io.Discard, &code)
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		out = append(out, path)
		for _, s := range c.Commands() {
			if s.Name() == "completion" || s.Name() == "help" || s.Hidden {
				continue // cobra's own, or not for people
			}
			walk(s, append(append([]string(nil), path...), s.Name()))
		}
	}
	walk(root, nil)
	if len(out) < 18 {
		t.Fatalf("found %d commands; the tree lost some", len(out))
	}
	return out
}

// TestHelpGolden: every command's --help is on stdout, exit 0, and
// exactly as testdata/help/<command>.golden (go test -run TestHelpGolden
// -update rewrites them after a deliberate change).
func TestHelpGolden(t *testing.T) {
	for _, path := range commandPaths(t) {
		name := strings.Join(append([]string{"sealgate"}, path...), "-")
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runMain(append(append([]string(nil), path...), "--help")...)
			if code != exitOK || stderr != "" || !strings.Contains(stdout, "Usage:") {
				t.Fatalf("exit %d, stderr %q, stdout %q", code, stderr, stdout)
			}
			golden := filepath.Join("testdata", "help", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestHelpGolden -update)", err)
			}
			if stdout != string(want) {
				t.Errorf("--help differs from %s (rewrite with -update if deliberate):\n%s", golden, stdout)
			}
		})
	}
}

// TestCompletion: the completion scripts come from the command tree, and
// the completion they drive names the subcommands and flags.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash":       "__start_sealgate",
		"zsh":        "#compdef sealgate",
		"fish":       "complete -c sealgate",
		"powershell": "Register-ArgumentCompleter",
	} {
		code, stdout, stderr := runMain("completion", shell)
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("completion %s: exit %d, %q lacks %q; stderr %q", shell, code, truncate(stdout), want, stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "trust", ""}, []string{"init", "seal", "status"}},
		{[]string{"__complete", "verify", "--trust"}, []string{"--trust-dir", "--trusted-root"}},
		{[]string{"__complete", "bundle", "export", "--o"}, []string{"--out"}},
	} {
		code, stdout, _ := runMain(tc.args...)
		for _, w := range tc.want {
			if code != exitOK || !strings.Contains(stdout, w+"\t") && !strings.Contains(stdout, w+"\n") {
				t.Errorf("%v: exit %d, %q lacks %q", tc.args, code, stdout, w)
			}
		}
	}
	// Deprecated names work but are not offered.
	if _, stdout, _ := runMain("__complete", "trust", "status", "--d"); strings.Contains(stdout, "--dir") {
		t.Errorf("the deprecated --dir is offered: %q", stdout)
	}
}

// TestManPages: one page per command, from the same definitions.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runMain("man", "--dir", dir)
	if code != exitOK {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	for _, path := range commandPaths(t) {
		name := strings.Join(append([]string{"sealgate"}, path...), "-") + ".1"
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.HasPrefix(b, []byte(`.nh`)) && !bytes.Contains(b, []byte(`.TH "SEALGATE"`)) {
			t.Errorf("%s is not a man page: %.200s", name, b)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "sealgate-trust-seal.1"))
	for _, want := range []string{`.TH "SEALGATE" "1"`, "--trust-dir", "seals a fresh key"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("sealgate-trust-seal.1 lacks %q:\n%s", want, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sealgate-help.1")); err == nil {
		t.Error("cobra's help command has a page")
	}
	if code, _, _ := runMain("man"); code != exitUsage {
		t.Errorf("man without --dir: exit %d, want 2", code)
	}
}

// TestGoStyleFlags: long flags with one dash, as Go's flag package (and
// containerd's image verifier) write them, still parse.
func TestGoStyleFlags(t *testing.T) {
	code, _, stderr := runMain("verify", "-policy", "/dev/null", "-output", "yaml", "a.io/x@sha256:"+strings.Repeat("a", 64))
	if code != exitUsage || !strings.Contains(stderr, `--output "yaml"`) {
		t.Errorf("exit %d, stderr %q: -output was not taken as --output", code, stderr)
	}
	if code, stdout, _ := runMain("-version"); code != exitOK || !strings.HasPrefix(stdout, "sealgate ") {
		t.Errorf("-version: exit %d %q", code, stdout)
	}
	var out bytes.Buffer
	if code := dispatch(context.Background(), []string{"run", "-help"}, &out, io.Discard); code != exitOK || !strings.Contains(out.String(), "--nri-socket") {
		t.Errorf("run -help: exit %d %q", code, out.String())
	}
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
