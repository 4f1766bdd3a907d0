package runtimegate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sealgate/sealgate/internal/strictjson"
)

// Escape is the wrapper's note that it let a container start on the
// escape annotation while sealgate did not answer.
type Escape struct {
	Time      time.Time `json:"time"`
	ID        string    `json:"id"`
	Kind      string    `json:"kind,omitempty"`
	Namespace string    `json:"namespace,omitempty"`
	Pod       string    `json:"pod,omitempty"`
	Container string    `json:"container,omitempty"`
	Image     string    `json:"image,omitempty"`
	// Why is why the daemon did not answer.
	Why string `json:"why"`
}

// maxEscapes bounds how many notes the daemon reads at once.
const maxEscapes = 4096

// SpoolDir is the folder beside socket where escape notes are left.
func SpoolDir(socket string) string { return filepath.Join(filepath.Dir(socket), escapeSpool) }

// WriteEscape leaves a note for the daemon. The folder is created root-only
// when the daemon never ran since boot.
func WriteEscape(socket string, e Escape) error {
	dir := SpoolDir(socket)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("escape note: %w", err)
	}
	msg, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("escape note: %w", err)
	}
	name := fmt.Sprintf("%d-%s.json", e.Time.UnixNano(), safeName(e.ID))
	tmp := filepath.Join(dir, "."+name)
	if err := os.WriteFile(tmp, msg, 0o600); err != nil {
		return fmt.Errorf("escape note: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("escape note: %w", err)
	}
	return nil
}

// TakeEscapes reads and removes the notes the wrapper left, oldest first.
// A malformed note is returned as an error beside the others, and removed.
func TakeEscapes(socket string) ([]Escape, []error) {
	dir := SpoolDir(socket)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("escape notes: %w", err)}
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) > maxEscapes {
		names = names[:maxEscapes]
	}
	var out []Escape
	var errs []error
	for _, n := range names {
		p := filepath.Join(dir, n)
		e, err := readEscape(p)
		os.Remove(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("escape note %s: %w", p, err))
			continue
		}
		out = append(out, e)
	}
	return out, errs
}

func readEscape(path string) (Escape, error) {
	f, err := os.Open(path)
	if err != nil {
		return Escape{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return Escape{}, err
	}
	var e Escape
	if err := strictjson.Unmarshal(b, &e, 4); err != nil {
		return Escape{}, err
	}
	return e, nil
}

// safeName keeps a container ID usable as a file name.
func safeName(id string) string {
	var b strings.Builder
	for _, r := range id {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		}
		if b.Len() >= 64 {
			break
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}
