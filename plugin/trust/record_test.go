package trust

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func fixtureRecord(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/sealed.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit applies fn to the fixture decoded as a generic JSON object and
// encodes it again.
func edit(t *testing.T, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(fixtureRecord(t), &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func files(m map[string]any) []any { return m["files"].([]any) }

func file(m map[string]any, i int) map[string]any { return files(m)[i].(map[string]any) }

func TestParseRecord(t *testing.T) {
	r, err := ParseRecord(fixtureRecord(t))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	if r.Generation != 1 || r.MeasurePCR != 23 || len(r.BindPCRs) != 1 || len(r.Files) != 4 || r.Files[2].Path != "policy.yaml" {
		t.Errorf("fixture parsed as %+v", r)
	}

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"not an object", []byte(`[]`), "cannot unmarshal"},
		{"unknown field", edit(t, func(m map[string]any) { m["trusted"] = true }), `unknown field "trusted"`},
		{"unknown field in sealed", edit(t, func(m map[string]any) { m["sealed"].(map[string]any)["x"] = 1 }), `unknown field "x"`},
		{"unknown field in a file", edit(t, func(m map[string]any) { file(m, 0)["mode"] = 1 }), `unknown field "mode"`},
		{"trailing data", append(fixtureRecord(t), []byte(`{}`)...), "data after the top-level value"},
		{"version 2", edit(t, func(m map[string]any) { m["version"] = 2 }), "version 2"},
		{"generation 0", edit(t, func(m map[string]any) { m["generation"] = 0 }), "generation 0"},
		{"negative generation", edit(t, func(m map[string]any) { m["generation"] = -1 }), "cannot unmarshal"},
		{"sealed at another generation", edit(t, func(m map[string]any) { m["generation"] = 2 }), "sealed at generation 1, the record says 2"},
		{"no sealedAt", edit(t, func(m map[string]any) { delete(m, "sealedAt") }), "no sealedAt"},
		{"no sealed key", edit(t, func(m map[string]any) { delete(m, "sealed") }), "no sealed key"},
		{"sealed key too large", edit(t, func(m map[string]any) {
			m["sealed"].(map[string]any)["private"] = strings.Repeat("AAAA", 2000)
		}), "sealed key larger"},
		{"bind PCRs differ from the key's", edit(t, func(m map[string]any) { m["bindPCRs"] = []int{} }), "sealed to PCRs [7]"},
		{"bind PCRs unsorted", edit(t, func(m map[string]any) {
			m["bindPCRs"] = []int{8, 7}
			m["sealed"].(map[string]any)["pcrs"] = []int{8, 7}
		}), "not ascending"},
		{"firmware measurement PCR", edit(t, func(m map[string]any) { m["measurePCR"] = 0 }), "measurement PCR 0"},
		{"measurement PCR 24", edit(t, func(m map[string]any) { m["measurePCR"] = 24 }), "measurement PCR 24"},
		{"short mac", edit(t, func(m map[string]any) { m["mac"] = "00" }), "mac is not"},
		{"upper-case mac", edit(t, func(m map[string]any) { m["mac"] = strings.ToUpper(m["mac"].(string)) }), "mac is not"},
		{"path with ..", edit(t, func(m map[string]any) { file(m, 0)["path"] = "../etc/passwd" }), "invalid path"},
		{"absolute path", edit(t, func(m map[string]any) { file(m, 0)["path"] = "/etc/passwd" }), "invalid path"},
		{"the record itself", edit(t, func(m map[string]any) { file(m, 3)["path"] = RecordName }), "invalid path"},
		{"unclean path", edit(t, func(m map[string]any) { file(m, 0)["path"] = "keys//README" }), "invalid path"},
		{"files out of order", edit(t, func(m map[string]any) {
			f := files(m)
			f[0], f[1] = f[1], f[0]
		}), "out of order"},
		{"file twice", edit(t, func(m map[string]any) { m["files"] = append(files(m), file(m, 3)) }), "listed twice"},
		{"bad sha256", edit(t, func(m map[string]any) { file(m, 1)["sha256"] = "xyz" }), "sha256 of keys/release.pub"},
		{"negative size", edit(t, func(m map[string]any) { file(m, 1)["size"] = -1 }), "size of keys/release.pub"},
		{"digest not of the files", edit(t, func(m map[string]any) { file(m, 1)["size"] = 179 }), "is not the digest of the files"},
		{"too large", append(fixtureRecord(t), make([]byte, maxRecordSize)...), "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRecord(tt.data)
			if !errors.Is(err, ErrRecord) {
				t.Fatalf("error %v, want ErrRecord", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}

// FuzzParseRecord feeds arbitrary bytes to ParseRecord, as an attacker who
// can write sealed.json could: it must never panic; every error wraps
// ErrRecord; a record it accepts is consistent and survives a round trip.
func FuzzParseRecord(f *testing.F) {
	f.Add(fixtureRecord(f))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"version":1,"generation":1,"sealedAt":"2025-01-01T00:00:00Z","measurePCR":-1,"bindPCRs":[],"sealed":{"public":"AA==","private":"AA==","generation":1},"files":[],"digest":"sha256:00","mac":""}`))
	f.Add([]byte(`{"version":1,"files":[{"path":"a","sha256":"","size":1}]} trailing`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecord(data)
		if err != nil {
			if !errors.Is(err, ErrRecord) {
				t.Fatalf("error does not wrap ErrRecord: %v", err)
			}
			return
		}
		for i := 1; i < len(r.Files); i++ {
			if r.Files[i-1].Path >= r.Files[i].Path {
				t.Fatalf("accepted unsorted files %q %q", r.Files[i-1].Path, r.Files[i].Path)
			}
		}
		for _, fl := range r.Files {
			if !validPath(fl.Path) {
				t.Fatalf("accepted path %q", fl.Path)
			}
		}
		if d, err := StoreDigest(r.Files); err != nil || d != r.Digest {
			t.Fatalf("accepted digest %s of files digesting to %s (%v)", r.Digest, d, err)
		}
		_ = r.computeMAC(make([]byte, keySize))
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseRecord(b)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if !reflect.DeepEqual(normalise(r), normalise(r2)) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r, r2)
		}
		if r.computeMAC(make([]byte, keySize)) != r2.computeMAC(make([]byte, keySize)) {
			t.Fatal("round trip changed the MAC input")
		}
	})
}

// normalise makes nil and empty slices, and time locations, compare equal.
func normalise(r *Record) *Record {
	c := *r
	c.SealedAt = c.SealedAt.UTC()
	if len(c.BindPCRs) == 0 {
		c.BindPCRs = nil
	}
	if len(c.Sealed.PCRs) == 0 {
		c.Sealed.PCRs = nil
	}
	if len(c.Files) == 0 {
		c.Files = nil
	}
	return &c
}
