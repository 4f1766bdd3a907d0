package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin/verify"
)

const testGen = 7

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

// verdictFor is a realistic allow verdict for key i: two satisfiers, one
// keyed and one keyless with a signing time.
func verdictFor(i int) Verdict {
	return Verdict{
		Allowed: true,
		Reasons: []string{fmt.Sprintf("verified by release, ci (%d)", i)},
		SatisfiedBy: []verify.Satisfier{
			{Authority: "release", KeyID: "sha256:" + strings.Repeat("ab", 32), Kind: "cosign-signature", Digest: key(i).Digest, Requirement: "signatures"},
			{Authority: "ci", Issuer: "https://token.actions.githubusercontent.com", Subject: "https://github.com/myorg/app/.github/workflows/release.yml@refs/tags/v1.2.3",
				SignedAt: time.Unix(1700000000+int64(i), 123456789), Kind: "attestation", PredicateType: "https://slsa.dev/provenance/v1", Digest: key(i).Digest, Requirement: "attestations[0]"},
		},
		VerifiedAt: time.Unix(1750000000+int64(i), int64(i)),
		Clock:      time.Duration(i+1) * time.Hour,
		Generation: testGen,
	}
}

// openT opens dir and closes the store when the test ends.
func openT(t testing.TB, dir string, k []byte, gen uint64, opts ...PersistOption) (*Persistent, LoadStats) {
	t.Helper()
	p, st, err := OpenPersistent(dir, k, gen, opts...)
	if err != nil {
		t.Fatalf("OpenPersistent: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p, st
}

// fill writes verdicts for keys 0..n-1 (n-1 most recently used) and closes.
func fill(t testing.TB, dir string, n int) {
	t.Helper()
	p, _, err := OpenPersistent(dir, testKey(1), testGen, WithMaxEntries(max(n, 1)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p.Put(key(i), verdictFor(i))
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// normalize makes verdicts comparable with reflect.DeepEqual: times in UTC,
// empty slices nil.
func normalize(v Verdict) Verdict {
	v.VerifiedAt = v.VerifiedAt.UTC()
	if len(v.Reasons) == 0 {
		v.Reasons = nil
	}
	if len(v.SatisfiedBy) == 0 {
		v.SatisfiedBy = nil
	}
	by := make([]verify.Satisfier, len(v.SatisfiedBy))
	for i, s := range v.SatisfiedBy {
		s.SignedAt = s.SignedAt.UTC()
		by[i] = s
	}
	if v.SatisfiedBy != nil {
		v.SatisfiedBy = by
	}
	return v
}

func sameVerdict(a, b Verdict) bool { return reflect.DeepEqual(normalize(a), normalize(b)) }

// recordOffsets returns where each record of a well-formed file starts.
func recordOffsets(t testing.TB, data []byte) []int {
	t.Helper()
	var offs []int
	for off := headerSize; off < len(data); {
		if !bytes.HasPrefix(data[off:], recordMarker) {
			t.Fatalf("no record marker at %d", off)
		}
		offs = append(offs, off)
		off += recordPrefix + int(binary.BigEndian.Uint32(data[off+markerSize:])) + macSize
	}
	return offs
}

func TestRoundTripAcrossReopen(t *testing.T) {
	tests := []struct {
		name string
		v    Verdict
	}{
		{"allow with satisfiers", verdictFor(3)},
		{"deny with reasons", Verdict{Allowed: false, Reasons: []string{"no signatures found", "attestation missing"}, VerifiedAt: time.Unix(1, 0)}},
		{"zero times and clock", Verdict{Allowed: true}},
		{"negative clock, pre-1970 time", Verdict{Allowed: true, Clock: -time.Second, VerifiedAt: time.Date(1969, 7, 20, 20, 17, 40, 5, time.UTC)}},
		{"empty strings kept", Verdict{Allowed: true, Reasons: []string{"", "x"}, SatisfiedBy: []verify.Satisfier{{}}}},
		{"unicode and binary", Verdict{Allowed: true, Reasons: []string{"vérifié ✓", "\x00\xff" + string(recordMarker)}}},
		{"long reason", Verdict{Allowed: true, Reasons: []string{strings.Repeat("r", 20000)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			k := Key{Digest: "sha256:" + strings.Repeat("1", 64), Repository: "registry.example.com/myorg/app", Rule: "myorg", PolicyDigest: "sha256:p"}
			p, _ := openT(t, dir, testKey(1), testGen)
			p.Put(k, tt.v)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			q, st := openT(t, dir, testKey(1), testGen)
			if st.Loaded != 1 || st.Ignored() != 0 || st.FileError != nil {
				t.Fatalf("load stats %+v", st)
			}
			got, ok := q.Get(k)
			if !ok {
				t.Fatal("verdict lost across reopen")
			}
			want := tt.v
			want.Generation = testGen // stamped by Put
			if !sameVerdict(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadDamage(t *testing.T) {
	const n = 5 // file order (most recent first): key 4, 3, 2, 1, 0
	at := func(data []byte, rec int) int { return recordOffsets(t, data)[rec] }
	tests := []struct {
		name    string
		mutate  func(data []byte) []byte
		key     []byte
		gen     uint64
		opts    []PersistOption
		want    LoadStats
		fileErr error
		missing []int
	}{
		{name: "intact", want: LoadStats{Loaded: 5}},
		{name: "flipped byte in one record's body", mutate: func(d []byte) []byte { d[at(d, 2)+recordPrefix+20] ^= 0x01; return d },
			want: LoadStats{Loaded: 4, BadMAC: 1}, missing: []int{2}},
		{name: "flipped byte in one record's MAC", mutate: func(d []byte) []byte { d[at(d, 1)-1] ^= 0x80; return d },
			want: LoadStats{Loaded: 4, BadMAC: 1}, missing: []int{4}},
		{name: "length off by one", mutate: func(d []byte) []byte { d[at(d, 1)+recordPrefix-1] ^= 0x01; return d },
			want: LoadStats{Loaded: 4, BadMAC: 1}, missing: []int{3}},
		{name: "length out of bounds", mutate: func(d []byte) []byte { d[at(d, 1)+markerSize] ^= 0x80; return d },
			want: LoadStats{Loaded: 4, Malformed: 1}, missing: []int{3}},
		{name: "flipped marker", mutate: func(d []byte) []byte { d[at(d, 3)+2] ^= 0x01; return d },
			want: LoadStats{Loaded: 4, Malformed: 1}, missing: []int{1}},
		{name: "zeroed record", mutate: func(d []byte) []byte { clear(d[at(d, 2):at(d, 3)]); return d },
			want: LoadStats{Loaded: 4, Malformed: 1}, missing: []int{2}},
		{name: "truncated in the last record", mutate: func(d []byte) []byte { return d[:len(d)-10] },
			want: LoadStats{Loaded: 4, Malformed: 1}, missing: []int{0}},
		{name: "truncated in the first record", mutate: func(d []byte) []byte { return d[:at(d, 0)+30] },
			want: LoadStats{Malformed: 1}, missing: []int{0, 1, 2, 3, 4}},
		{name: "truncated to the header", mutate: func(d []byte) []byte { return d[:headerSize] },
			want: LoadStats{}, missing: []int{0, 1, 2, 3, 4}},
		{name: "truncated in the header", mutate: func(d []byte) []byte { return d[:5] },
			fileErr: ErrNotCacheFile, missing: []int{0, 1, 2, 3, 4}},
		{name: "empty file", mutate: func(d []byte) []byte { return nil },
			fileErr: ErrNotCacheFile, missing: []int{0, 1, 2, 3, 4}},
		{name: "not a cache file", mutate: func(d []byte) []byte { return []byte("{\"verdicts\": []}") },
			fileErr: ErrNotCacheFile, missing: []int{0, 1, 2, 3, 4}},
		{name: "newer format version", mutate: func(d []byte) []byte { d[9] = 2; return d },
			fileErr: ErrUnsupportedVersion, missing: []int{0, 1, 2, 3, 4}},
		{name: "garbage appended", mutate: func(d []byte) []byte { return append(d, "garbage\xffSGVREC"...) },
			want: LoadStats{Loaded: 5, Malformed: 1}},
		{name: "record repeated", mutate: func(d []byte) []byte { return append(d, d[at(d, 4):]...) },
			want: LoadStats{Loaded: 5, Duplicate: 1}},
		{name: "older copy after a re-seal", gen: testGen + 1,
			want: LoadStats{OldGeneration: 5}, missing: []int{0, 1, 2, 3, 4}},
		{name: "other key", key: testKey(2),
			want: LoadStats{BadMAC: 5}, missing: []int{0, 1, 2, 3, 4}},
		{name: "generation the counter never had", gen: testGen - 1,
			want: LoadStats{NewerGeneration: 5}, missing: []int{0, 1, 2, 3, 4}},
		{name: "file over the size bound", opts: []PersistOption{WithMaxFileSize(100)},
			fileErr: ErrFileTooLarge, missing: []int{0, 1, 2, 3, 4}},
		{name: "more records than entries", opts: []PersistOption{WithMaxEntries(3)},
			want: LoadStats{Loaded: 3, OverLimit: 2}, missing: []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fill(t, dir, n)
			path := filepath.Join(dir, SnapshotFile)
			if tt.mutate != nil {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, tt.mutate(data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			k, gen := tt.key, tt.gen
			if k == nil {
				k = testKey(1)
			}
			if gen == 0 {
				gen = testGen
			}
			p, st, err := OpenPersistent(dir, k, gen, tt.opts...)
			if err != nil {
				t.Fatalf("start broken: %v", err)
			}
			defer p.Close()
			if !errors.Is(st.FileError, tt.fileErr) || (tt.fileErr == nil) != (st.FileError == nil) {
				t.Fatalf("FileError = %v, want %v", st.FileError, tt.fileErr)
			}
			got := st
			got.FileError, got.Bytes, got.Duration = nil, 0, 0
			if got != tt.want {
				t.Fatalf("load stats\n got %+v\nwant %+v", got, tt.want)
			}
			for i := range n {
				v, ok := p.Get(key(i))
				if want := !contains(tt.missing, i); ok != want {
					t.Fatalf("key %d loaded = %v, want %v", i, ok, want)
				}
				if ok && !sameVerdict(v, verdictFor(i)) {
					t.Fatalf("key %d: verdict %+v differs from what was stored", i, v)
				}
			}

			// The next snapshot drops what was ignored.
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			_, again := openT(t, dir, k, gen, tt.opts...)
			if again.Ignored() != 0 || again.FileError != nil || again.Loaded != tt.want.Loaded {
				t.Fatalf("after rewrite: %+v", again)
			}
		})
	}
}

func contains(s []int, x int) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func TestSnapshotNotRegular(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, path string)
	}{
		{"symlink to a valid snapshot", func(t *testing.T, path string) {
			other := t.TempDir()
			fill(t, other, 3)
			if err := os.Symlink(filepath.Join(other, SnapshotFile), path); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, path string) {
			if err := mkfifo(path); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.plant(t, filepath.Join(dir, SnapshotFile))
			done := make(chan struct{})
			var st LoadStats
			var p *Persistent
			go func() {
				defer close(done)
				var err error
				p, st, err = OpenPersistent(dir, testKey(1), testGen, WithReadOnly())
				if err != nil {
					t.Errorf("start broken: %v", err)
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("open blocked")
			}
			if p == nil {
				return
			}
			if !errors.Is(st.FileError, ErrNotCacheFile) || st.Loaded != 0 || p.Len() != 0 {
				t.Fatalf("stats %+v, %d entries", st, p.Len())
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		key  []byte
		opts []PersistOption
	}{
		{"directory is a file", file, testKey(1), nil},
		{"directory under a file", filepath.Join(file, "x"), testKey(1), nil},
		{"read-only, directory is a file", file, testKey(1), []PersistOption{WithReadOnly()}},
		{"short key", t.TempDir(), testKey(1)[:16], nil},
		{"no key", t.TempDir(), nil, nil},
		{"bad max entries", t.TempDir(), testKey(1), []PersistOption{WithMaxEntries(0)}},
		{"bad flush delay", t.TempDir(), testKey(1), []PersistOption{WithFlushDelay(0)}},
		{"bad file size", t.TempDir(), testKey(1), []PersistOption{WithMaxFileSize(3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, err := OpenPersistent(tt.dir, tt.key, testGen, tt.opts...)
			if err == nil {
				p.Close()
				t.Fatal("no error")
			}
		})
	}
}

func TestLRUAcrossReopen(t *testing.T) {
	tests := []struct {
		name     string
		max      int
		reopen   int
		wantKeys []int // most recently used first
		overflow int
	}{
		{"same bound", 4, 4, []int{1, 6, 5, 4}, 0},
		{"smaller bound on reopen", 4, 2, []int{1, 6}, 2},
		{"larger bound on reopen", 4, 10, []int{1, 6, 5, 4}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p, _ := openT(t, dir, testKey(1), testGen, WithMaxEntries(tt.max))
			for i := range 7 {
				p.Put(key(i), verdictFor(i))
				if i == 1 || i == 4 {
					p.Get(key(1)) // 1 stays in use
				}
			}
			p.Get(key(1))
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			q, st := openT(t, dir, testKey(1), testGen, WithMaxEntries(tt.reopen))
			if st.OverLimit != tt.overflow {
				t.Fatalf("OverLimit = %d, want %d", st.OverLimit, tt.overflow)
			}
			var got []int
			for _, e := range q.Entries() {
				var i int
				fmt.Sscanf(strings.TrimPrefix(e.Key.Digest, "sha256:"), "%d", &i)
				got = append(got, i)
			}
			if !reflect.DeepEqual(got, tt.wantKeys) {
				t.Fatalf("entries %v, want %v", got, tt.wantKeys)
			}
		})
	}
}

// TestCrashLeftovers simulates a crash in the middle of a snapshot write:
// the temporary file is there, whole or torn, and the snapshot it was to
// replace is the previous one.
func TestCrashLeftovers(t *testing.T) {
	tests := []struct {
		name string
		tmp  func(prev []byte) []byte
	}{
		{"torn temporary", func(prev []byte) []byte { return prev[:len(prev)/2] }},
		{"whole temporary not renamed", func(prev []byte) []byte { return prev }},
		{"empty temporary", func([]byte) []byte { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fill(t, dir, 3)
			prev, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{".verdicts-123.tmp", ".verdicts-x.tmp"} {
				if err := os.WriteFile(filepath.Join(dir, name), tt.tmp(prev), 0o600); err != nil {
					t.Fatal(err)
				}
			}

			// A reader beside the daemon leaves them alone.
			_, ro := openT(t, dir, testKey(1), testGen, WithReadOnly())
			if ro.StrayTemp != 0 || ro.Loaded != 3 {
				t.Fatalf("read-only stats %+v", ro)
			}

			p, st := openT(t, dir, testKey(1), testGen)
			if st.StrayTemp != 2 || st.Loaded != 3 || st.Ignored() != 0 {
				t.Fatalf("stats %+v", st)
			}
			if p.Len() != 3 {
				t.Fatalf("Len = %d", p.Len())
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 || ents[0].Name() != SnapshotFile {
				t.Fatalf("directory holds %v, want only %s", ents, SnapshotFile)
			}
		})
	}
}

func TestPutStaysInMemory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "sealgate") // created on open
	p, _ := openT(t, dir, testKey(1), testGen, WithFlushDelay(time.Hour))
	p.Put(key(1), verdictFor(1))
	if _, ok := p.Get(key(1)); !ok {
		t.Fatal("miss after Put")
	}
	if _, err := os.Stat(filepath.Join(dir, SnapshotFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Put wrote the snapshot (stat: %v)", err)
	}
	if !p.Stats().Dirty {
		t.Fatal("not dirty after Put")
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if p.Stats().Dirty || p.Stats().Flushes != 1 {
		t.Fatalf("stats after Flush %+v", p.Stats())
	}
	_, st := openT(t, dir, testKey(1), testGen, WithReadOnly())
	if st.Loaded != 1 {
		t.Fatalf("after Flush the snapshot holds %d verdicts", st.Loaded)
	}
}

func TestBackgroundFlush(t *testing.T) {
	dir := t.TempDir()
	p, _ := openT(t, dir, testKey(1), testGen, WithFlushDelay(20*time.Millisecond))
	for i := range 10 {
		p.Put(key(i), verdictFor(i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Dirty {
		if time.Now().After(deadline) {
			t.Fatal("flusher did not write within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, st := openT(t, dir, testKey(1), testGen, WithReadOnly())
	if st.Loaded != 10 {
		t.Fatalf("snapshot holds %d verdicts, want 10", st.Loaded)
	}
	// Gets alone do not make the flusher rewrite the file.
	n := p.Stats().Flushes
	p.Get(key(3))
	time.Sleep(100 * time.Millisecond)
	if got := p.Stats().Flushes; got != n {
		t.Fatalf("a Get caused a write (%d -> %d flushes)", n, got)
	}
}

func TestFlushErrorReported(t *testing.T) {
	dir := t.TempDir()
	errs := make(chan error, 10)
	p, _ := openT(t, dir, testKey(1), testGen, WithFlushDelay(5*time.Millisecond), WithFlushErrorHandler(func(err error) { errs <- err }))
	// A directory where the snapshot goes makes the rename fail.
	if err := os.Mkdir(filepath.Join(dir, SnapshotFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, SnapshotFile, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p.Put(key(1), verdictFor(1))
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "write verdict cache") {
			t.Fatalf("error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no flush error reported")
	}
	st := p.Stats()
	if st.FlushErrors == 0 || st.LastFlushError == nil || !st.Dirty {
		t.Fatalf("stats %+v", st)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("a failed write left %v", ents)
	}
}

func TestPutGeneration(t *testing.T) {
	tests := []struct {
		name    string
		gen     uint64
		stored  bool
		wantGen uint64
	}{
		{"unset is stamped", 0, true, testGen},
		{"same", testGen, true, testGen},
		{"older refused", testGen - 1, false, 0},
		{"newer refused", testGen + 1, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := openT(t, t.TempDir(), testKey(1), testGen)
			v := verdictFor(1)
			v.Generation = tt.gen
			p.Put(key(1), v)
			got, ok := p.Get(key(1))
			if ok != tt.stored || got.Generation != tt.wantGen {
				t.Fatalf("stored %v generation %d, want %v %d", ok, got.Generation, tt.stored, tt.wantGen)
			}
			if want := map[bool]uint64{true: 0, false: 1}[tt.stored]; p.Stats().Rejected != want {
				t.Fatalf("Rejected = %d, want %d", p.Stats().Rejected, want)
			}
		})
	}
}

func TestOneWriterPerDirectory(t *testing.T) {
	dir := t.TempDir()
	p, _, err := OpenPersistent(dir, testKey(1), testGen)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(key(1), verdictFor(1))
	if _, _, err := OpenPersistent(dir, testKey(1), testGen); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: err = %v, want ErrLocked", err)
	}
	ro, _ := openT(t, dir, testKey(1), testGen, WithReadOnly())
	for name, err := range map[string]error{"Flush": ro.Flush(), "Purge": ro.Purge()} {
		if !errors.Is(err, ErrReadOnly) {
			t.Fatalf("read-only %s: %v", name, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close: %v", err)
	}
	if _, st := openT(t, dir, testKey(1), testGen); st.Loaded != 1 {
		t.Fatalf("after Close the next writer loads %d", st.Loaded)
	}
}

func TestPurge(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 5)
	p, _ := openT(t, dir, testKey(1), testGen)
	if err := p.Purge(); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 0 || len(p.Entries()) != 0 {
		t.Fatal("verdicts left in memory")
	}
	_, st := openT(t, dir, testKey(1), testGen, WithReadOnly())
	if st.Loaded != 0 || st.Ignored() != 0 || st.FileError != nil {
		t.Fatalf("after Purge the snapshot gives %+v", st)
	}
}

func TestSizeBoundsOnWrite(t *testing.T) {
	dir := t.TempDir()
	one, err := appendRecord(nil, newMAC(testKey(1)), key(0), verdictFor(0))
	if err != nil {
		t.Fatal(err)
	}
	limit := int64(headerSize + 3*len(one) + 10)
	p, _ := openT(t, dir, testKey(1), testGen, WithMaxFileSize(limit))
	for i := range 6 {
		p.Put(key(i), verdictFor(i))
	}
	huge := Verdict{Allowed: true, Reasons: []string{strings.Repeat("x", MaxRecordSize)}}
	p.Put(key(99), huge)
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.Unpersisted != 1 || st.Trimmed != 3 || st.Entries != 7 {
		t.Fatalf("stats %+v", st)
	}
	if _, ok := p.Get(key(99)); !ok {
		t.Fatal("unpersisted verdict not kept in memory")
	}
	fi, err := os.Stat(filepath.Join(dir, SnapshotFile))
	if err != nil || fi.Size() > limit {
		t.Fatalf("snapshot %v bytes over %d (%v)", fi.Size(), limit, err)
	}
	_, ro := openT(t, dir, testKey(1), testGen, WithReadOnly(), WithMaxFileSize(limit))
	if ro.Loaded != 3 {
		t.Fatalf("reopen loads %d, want the 3 most recent", ro.Loaded)
	}
}

func TestConcurrentWithFlusher(t *testing.T) {
	dir := t.TempDir()
	p, _ := openT(t, dir, testKey(1), testGen, WithMaxEntries(300), WithFlushDelay(time.Millisecond))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := key(g*1000 + i%200)
				p.Put(k, verdictFor(i))
				if v, ok := p.Get(k); ok && v.Generation != testGen {
					t.Errorf("generation %d", v.Generation)
				}
				switch i % 100 {
				case 0:
					if err := p.Flush(); err != nil {
						t.Error(err)
					}
				case 50:
					p.Entries()
					p.Stats()
				}
			}
		})
	}
	wg.Wait()
	if p.Len() > 300 {
		t.Fatalf("Len = %d exceeds bound", p.Len())
	}
	want := p.Entries()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	q, st := openT(t, dir, testKey(1), testGen, WithMaxEntries(300))
	if st.Loaded != len(want) || st.Ignored() != 0 {
		t.Fatalf("reopen %+v, want %d loaded", st, len(want))
	}
	got := q.Entries()
	for i := range want {
		if got[i].Key != want[i].Key || !sameVerdict(got[i].Verdict, want[i].Verdict) {
			t.Fatalf("entry %d differs after reopen", i)
		}
	}
}

// TestSatisfierEncoded fails when verify.Satisfier gains a field: the record
// format must then encode it (and its version move on), or the field would
// be silently lost across a restart.
func TestSatisfierEncoded(t *testing.T) {
	// Origin (where the material was found) is left out on purpose: it
	// explains a fresh decision and is not part of what a verdict vouches
	// for. ValidUntil too: a verdict with it is never persisted.
	if n := reflect.TypeFor[verify.Satisfier]().NumField(); n != 11 {
		t.Fatalf("verify.Satisfier has %d fields; record.go encodes 9 of them (all but Origin and ValidUntil)", n)
	}
	if n := reflect.TypeFor[Verdict]().NumField(); n != 6 {
		t.Fatalf("Verdict has %d fields; record.go encodes 6", n)
	}
	if n := reflect.TypeFor[Key]().NumField(); n != 4 {
		t.Fatalf("Key has %d fields; record.go encodes 4", n)
	}
}

// TestClockBoundVerdictNotPersisted: a verdict that holds only until a
// certificate expires is not stored, since its record could not say so.
func TestClockBoundVerdictNotPersisted(t *testing.T) {
	dir := t.TempDir()
	p, _ := openT(t, dir, testKey(1), testGen)
	k := Key{Digest: "sha256:" + strings.Repeat("a", 64), Repository: "r.io/app", Rule: "r", PolicyDigest: "sha256:" + strings.Repeat("b", 64)}
	p.Put(k, Verdict{Allowed: true, VerifiedAt: time.Now(), SatisfiedBy: []verify.Satisfier{{Authority: "certificate ca.pem s", ValidUntil: time.Now().Add(time.Hour)}}})
	if _, ok := p.Get(k); ok {
		t.Fatal("a verdict with ValidUntil was stored")
	}
	p.Put(k, Verdict{Allowed: true, VerifiedAt: time.Now(), SatisfiedBy: []verify.Satisfier{{Authority: "certificate ca.pem s", SignedAt: time.Now()}}})
	if _, ok := p.Get(k); !ok {
		t.Fatal("a verdict with a signing time was not stored")
	}
}
