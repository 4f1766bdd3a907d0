package cache

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/verdicts-v1.cache")

const goldenFile = "testdata/verdicts-v1.cache"

// goldenEntries are the verdicts of testdata/verdicts-v1.cache (key
// testKey(1), generation testGen), most recently used first.
func goldenEntries() []Entry {
	deny := Verdict{Allowed: false, Reasons: []string{"no signatures found for registry.example.com/myorg/app"}, VerifiedAt: time.Unix(1750000100, 0), Generation: testGen}
	bare := Verdict{Allowed: true, Generation: testGen}
	return []Entry{
		{key(2), verdictFor(2)},
		{key(1), deny},
		{key(0), verdictFor(0)},
		{Key{Digest: "sha256:" + string(bytes.Repeat([]byte("f"), 64))}, bare},
	}
}

func encodeEntries(t testing.TB, ents []Entry) []byte {
	t.Helper()
	b := appendHeader(nil)
	mac := newMAC(testKey(1))
	for _, e := range ents {
		var err error
		if b, err = appendRecord(b, mac, e.Key, e.Verdict); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// TestGoldenFile pins format version 1: a file written by an earlier build
// must load to the same verdicts, and the encoding must not drift (a change
// needs a new version and a reader for the old one).
func TestGoldenFile(t *testing.T) {
	want := goldenEntries()
	enc := encodeEntries(t, want)
	if *update {
		if err := os.WriteFile(goldenFile, enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, golden) {
		t.Fatalf("encoding of format v1 changed (%d bytes, golden %d); bump formatVersion instead", len(enc), len(golden))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SnapshotFile), golden, 0o600); err != nil {
		t.Fatal(err)
	}
	p, st := openT(t, dir, testKey(1), testGen, WithReadOnly())
	if st.Loaded != len(want) || st.Ignored() != 0 {
		t.Fatalf("stats %+v", st)
	}
	got := p.Entries()
	for i := range want {
		if got[i].Key != want[i].Key || !sameVerdict(got[i].Verdict, want[i].Verdict) {
			t.Fatalf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// FuzzLoadRecords feeds arbitrary snapshot bytes to the reader: it must not
// panic, and every verdict it yields must be exactly what a valid MAC with
// the key covers, of the store's generation, and a piece of the input.
func FuzzLoadRecords(f *testing.F) {
	golden, err := os.ReadFile(goldenFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:len(golden)-7])
	f.Add(append(bytes.Clone(golden), golden[headerSize:]...))
	flipped := bytes.Clone(golden)
	flipped[headerSize+40] ^= 1
	f.Add(flipped)
	f.Add(encodeEntries(f, nil))
	f.Add(append(appendHeader(nil), recordMarker...))
	f.Add([]byte("SGVCACHE\x00\x02\x00\x00"))
	f.Add([]byte{})

	key := testKey(1)
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := checkHeader(data)
		if err != nil {
			recs = data // the records alone are fair game too
		}
		var st LoadStats
		yielded := 0
		parseRecords(recs, newMAC(key), testGen, &st, func(k Key, v Verdict, raw []byte) {
			yielded++
			if !bytes.Contains(data, raw) {
				t.Fatalf("yielded record is not in the input")
			}
			if len(raw) < recordPrefix+macSize {
				t.Fatalf("yielded record of %d bytes", len(raw))
			}
			body, tag := raw[recordPrefix:len(raw)-macSize], raw[len(raw)-macSize:]
			h := hmac.New(sha256.New, key)
			h.Write(macDomain)
			h.Write(body)
			if !hmac.Equal(h.Sum(nil), tag) {
				t.Fatalf("yielded a record whose MAC is not valid")
			}
			again, err := appendRecord(nil, newMAC(key), k, v)
			if err != nil || !bytes.Equal(again, raw) {
				t.Fatalf("yielded verdict is not what the MAC covers (re-encoding differs: %v)", err)
			}
			if v.Generation != testGen {
				t.Fatalf("yielded generation %d", v.Generation)
			}
		})
		if st.BadMAC < 0 || st.Malformed < 0 || yielded > len(recs)/(recordPrefix+macSize) {
			t.Fatalf("implausible counts: %+v, %d yielded", st, yielded)
		}
	})
}
