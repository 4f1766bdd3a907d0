package decisionlog

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerify: Verify reads files anyone who can write the state folder may
// have altered; whatever they hold, it returns (an error or a count) and
// never panics, and what it accepts are lines it could have written.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"seq":1,"prev":"","time":"2026-01-01T00:00:00Z","image":"x","rule":"r","mode":"enforce","verdict":"allow","source":"cache"}` + "\n"))
	f.Add([]byte("{}\n{}\n"))
	f.Add([]byte(`{"seq":2,"prev":"00"}` + "\n" + `{"seq":3,"prev":"zz"}`))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "log")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := Verify([]string{p}, nil)
		if err == nil && n > 0 && data[len(data)-1] != '\n' {
			t.Fatalf("accepted %d lines ending without a newline", n)
		}
	})
}
