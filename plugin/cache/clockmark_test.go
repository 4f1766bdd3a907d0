package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestClockMark(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, KeySize)
	if _, ok, err := ReadClockMark(dir, key, 3); ok || err != nil {
		t.Fatalf("no mark yet: ok=%v err=%v", ok, err)
	}
	if err := WriteClockMark(dir, key, 3, 7*time.Minute+13*time.Second); err != nil {
		t.Fatal(err)
	}
	got, ok, err := ReadClockMark(dir, key, 3)
	if err != nil || !ok || got != 7*time.Minute+13*time.Second {
		t.Fatalf("ReadClockMark = %v, %v, %v", got, ok, err)
	}
	if _, _, err := ReadClockMark(dir, bytes.Repeat([]byte{8}, KeySize), 3); !errors.Is(err, ErrClockMark) {
		t.Errorf("another key: err = %v, want ErrClockMark", err)
	}
	if _, _, err := ReadClockMark(dir, key, 4); !errors.Is(err, ErrClockMark) {
		t.Errorf("another generation: err = %v, want ErrClockMark", err)
	}
	// Lowering the mark by hand (to hide a clock that went back) breaks it.
	p := filepath.Join(dir, ClockMarkFile)
	b, _ := os.ReadFile(p)
	lowered := bytes.Replace(b, []byte(" 433000 "), []byte(" 69000 "), 1)
	if bytes.Equal(lowered, b) {
		t.Fatalf("mark %q does not hold 433000 ms", b)
	}
	if err := os.WriteFile(p, lowered, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadClockMark(dir, key, 3); !errors.Is(err, ErrClockMark) {
		t.Errorf("lowered mark: err = %v, want ErrClockMark", err)
	}
}
