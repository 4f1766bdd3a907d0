package decisionlog

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeLog writes n decisions through a Writer and returns the log's path.
func writeLog(t *testing.T, dir string, n int, opts ...Option) string {
	t.Helper()
	path := filepath.Join(dir, "decisions.log")
	appendLog(t, path, 0, n, opts...)
	return path
}

func appendLog(t *testing.T, path string, from, n int, opts ...Option) {
	t.Helper()
	w, err := Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	for i := from; i < from+n; i++ {
		w.Add(Entry{Time: time.Unix(int64(i), 0).UTC(), Image: fmt.Sprintf("r.io/app:%d", i), Digest: "sha256:" + strings.Repeat("a", 64),
			Rule: "app", Mode: "enforce", Verdict: "allow", Source: "cache", Reasons: []string{"verified by key keys/release.pub"}})
		if i%7 == 0 {
			time.Sleep(time.Millisecond) // several batches
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w.Lost() != 0 {
		t.Fatalf("%d decisions lost", w.Lost())
	}
}

func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func rewrite(t *testing.T, path string, ls [][]byte) {
	t.Helper()
	out := bytes.Join(ls, nil)
	if !bytes.HasSuffix(out, []byte("\n")) {
		out = append(out, '\n')
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTampering: a removed line, an edited line, a reordered pair and a
// cut-off tail each fail Verify, naming the line; the untouched log passes.
func TestTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(ls [][]byte) [][]byte
		want   string
	}{
		{"untouched", func(ls [][]byte) [][]byte { return ls }, ""},
		{"line removed", func(ls [][]byte) [][]byte { return append(ls[:3:3], ls[4:]...) }, "decisions.log:4: decision log chain broken: line number 5 follows 3"},
		{"line edited", func(ls [][]byte) [][]byte {
			ls[5] = bytes.Replace(ls[5], []byte(`"allow"`), []byte(`"deny"`), 1)
			return ls
		}, "decisions.log:7: decision log chain broken: the line before it (line 6 of the chain)"},
		{"lines swapped", func(ls [][]byte) [][]byte { ls[2], ls[3] = ls[3], ls[2]; return ls }, "decisions.log:3: decision log chain broken: line number 4 follows 2"},
		{"tail cut off", func(ls [][]byte) [][]byte { return ls[:len(ls)-2] }, "the log ends at line 18, the head file at line 20"},
		{"last line edited", func(ls [][]byte) [][]byte {
			ls[19] = bytes.Replace(ls[19], []byte(`"allow"`), []byte(`"deny"`), 1)
			return ls
		}, "decisions.log:20: decision log chain broken: line 20 is not the one the head file names"},
		{"lines written after the head moved", func(ls [][]byte) [][]byte { return ls }, "HEAD-BEHIND"},
		{"garbage line", func(ls [][]byte) [][]byte { ls[1] = []byte("{oops\n"); return ls }, "decisions.log:2: decision log chain broken: not a decision line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLog(t, t.TempDir(), 20)
			rewrite(t, path, tc.tamper(lines(t, path)))
			head, err := ReadHead(path + ".head")
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "HEAD-BEHIND" {
				// A crash between lines reaching the file and the head file
				// moving: the lines past the head are the chain's own.
				head, tc.want = &Head{Seq: 17, Hash: hashLine(bytes.TrimSuffix(lines(t, path)[16], []byte("\n")))}, ""
			}
			n, err := Verify([]string{path}, head)
			switch {
			case tc.want == "" && (err != nil || n != 20):
				t.Fatalf("untouched log: %d lines, %v", n, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRotationKeepsChain: rotated files and the current one verify as one
// chain, a line taken out of a rotated file is found, and a restart
// continues the chain.
func TestRotationKeepsChain(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, 60, WithRotation(4096, 8))
	files := Files(path)
	if len(files) < 3 {
		t.Fatalf("files %v: no rotation", files)
	}
	appendLog(t, path, 60, 5, WithRotation(4096, 8)) // a restart
	head, err := ReadHead(path + ".head")
	if err != nil {
		t.Fatal(err)
	}
	files = Files(path)
	if n, err := Verify(files, head); err != nil || n != 65 {
		t.Fatalf("%d lines, %v", n, err)
	}
	ls := lines(t, files[1])
	rewrite(t, files[1], append(ls[:1:1], ls[2:]...))
	if _, err := Verify(files, head); err == nil || !strings.Contains(err.Error(), filepath.Base(files[1])+":2:") {
		t.Fatalf("a line removed from %s: %v", files[1], err)
	}
}

// TestTornLastLine: a line cut off by a crash is dropped when the log is
// opened again, and the chain goes on.
func TestTornLastLine(t *testing.T) {
	path := writeLog(t, t.TempDir(), 5)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":6,"prev":"ab`)
	f.Close()
	if _, err := Verify([]string{path}, nil); err == nil || !strings.Contains(err.Error(), "torn write") {
		t.Fatalf("torn line: %v", err)
	}
	appendLog(t, path, 5, 3)
	head, _ := ReadHead(path + ".head")
	if n, err := Verify([]string{path}, head); err != nil || n != 8 {
		t.Fatalf("%d lines, %v", n, err)
	}
}

// TestLostDecisionsSaid: decisions that found the queue full are counted
// and said by the next line written.
func TestLostDecisionsSaid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for range defaultQueue + 3 {
		w.Add(Entry{Image: "x", Rule: "r", Mode: "enforce", Verdict: "allow", Source: "cache"})
	}
	if w.Lost() != 3 {
		t.Fatalf("lost %d, want 3", w.Lost())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ls := lines(t, path)
	if len(ls) != defaultQueue || !bytes.Contains(ls[0], []byte(`"lost":3`)) {
		t.Fatalf("%d lines; first %s", len(ls), ls[0])
	}
}
