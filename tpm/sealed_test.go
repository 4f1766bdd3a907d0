package tpm

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

var update = flag.Bool("update", false, "rewrite the sealed-file fixtures in testdata/ from the simulator")

// fixtures are sealed files as `sealgate trust seal` writes them, made by
// the simulator (go test ./tpm -run TestFixtures -update).
var fixtures = []struct {
	file string
	pcrs []int
}{
	{"sealed.json", nil},
	{"sealed-pcr.json", []int{7, 16}},
}

func TestFixtures(t *testing.T) {
	if *update {
		tp, err := Open("simulator")
		if err != nil {
			t.Fatal(err)
		}
		defer tp.Close()
		for _, f := range fixtures {
			s, _ := sealAtNext(t, tp, bytes.Repeat([]byte{0x5E}, 32), f.pcrs...)
			b, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("testdata", f.file), append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range fixtures {
		s := readFixture(t, f.file)
		if !reflect.DeepEqual(s.PCRs, f.pcrs) || len(s.PCRValues) != len(f.pcrs) || s.Generation == 0 || s.CounterIndex != DefaultCounterIndex {
			t.Errorf("%s: %+v", f.file, s)
		}
	}
}

func readFixture(t testing.TB, name string) *Sealed {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := ReadSealed(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

// rewrite returns the fixture's JSON after f changed its fields.
func rewrite(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sealed-pcr.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// publicWith returns the fixture's public area after f changed it.
func publicWith(t *testing.T, f func(p *tpm2.TPMTPublic)) []byte {
	t.Helper()
	s := readFixture(t, "sealed.json")
	pub2b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](s.Public)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pub2b.Contents()
	if err != nil {
		t.Fatal(err)
	}
	f(pub)
	return tpm2.Marshal(tpm2.New2B(*pub))
}

func TestParseSealed(t *testing.T) {
	valid, err := os.ReadFile(filepath.Join("testdata", "sealed-pcr.json"))
	if err != nil {
		t.Fatal(err)
	}
	fixture := readFixture(t, "sealed-pcr.json")
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"fixture", valid, true},
		{"fixture with trailing newlines", append(append([]byte(nil), valid...), "\n\n"...), true},
		{"not JSON", []byte("sealed"), false},
		{"empty", nil, false},
		{"null", []byte("null"), false},
		{"two objects", append(append([]byte(nil), valid...), valid...), false},
		{"trailing data", append(append([]byte(nil), valid...), "x"...), false},
		{"too large", append(append([]byte(nil), valid...), bytes.Repeat([]byte(" "), MaxSealedSize)...), false},
		{"unknown field", rewrite(t, func(m map[string]any) { m["policy"] = "any" }), false},
		{"negative generation", rewrite(t, func(m map[string]any) { m["generation"] = -1 }), false},
		{"public missing", rewrite(t, func(m map[string]any) { delete(m, "public") }), false},
		{"private missing", rewrite(t, func(m map[string]any) { delete(m, "private") }), false},
		{"public not base64", rewrite(t, func(m map[string]any) { m["public"] = "!!" }), false},
		{"public with a trailing byte", rewrite(t, func(m map[string]any) { m["public"] = append(fixture.Public, 0) }), false},
		{"private with a trailing byte", rewrite(t, func(m map[string]any) { m["private"] = append(fixture.Private, 0) }), false},
		{"public truncated", rewrite(t, func(m map[string]any) { m["public"] = fixture.Public[:len(fixture.Public)-1] }), false},
		{"public of a storage key", rewrite(t, func(m map[string]any) { m["public"] = tpm2.Marshal(tpm2.New2B(tpm2.ECCSRKTemplate)) }), false},
		{"public usable with a password", rewrite(t, func(m map[string]any) {
			m["public"] = publicWith(t, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.UserWithAuth = true })
		}), false},
		{"public without NoDA", rewrite(t, func(m map[string]any) {
			m["public"] = publicWith(t, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.NoDA = false })
		}), false},
		{"public duplicable", rewrite(t, func(m map[string]any) {
			m["public"] = publicWith(t, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM, p.ObjectAttributes.FixedParent = false, false })
		}), false},
		{"public with SHA-1 names", rewrite(t, func(m map[string]any) {
			m["public"] = publicWith(t, func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 })
		}), false},
		{"public without a policy", rewrite(t, func(m map[string]any) {
			m["public"] = publicWith(t, func(p *tpm2.TPMTPublic) { p.AuthPolicy.Buffer = nil })
		}), false},
		{"public as an HMAC key", rewrite(t, func(m map[string]any) {
			m["public"] = publicWith(t, func(p *tpm2.TPMTPublic) {
				p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
					Scheme: tpm2.TPMTKeyedHashScheme{
						Scheme:  tpm2.TPMAlgHMAC,
						Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256}),
					},
				})
			})
		}), false},
		{"PCRs unsorted", rewrite(t, func(m map[string]any) { m["pcrs"] = []int{16, 7} }), false},
		{"PCR repeated", rewrite(t, func(m map[string]any) { m["pcrs"] = []int{7, 7} }), false},
		{"PCR 24", rewrite(t, func(m map[string]any) { m["pcrs"] = []int{7, 24} }), false},
		{"PCR values missing", rewrite(t, func(m map[string]any) { delete(m, "pcrValues") }), false},
		{"PCR value short", rewrite(t, func(m map[string]any) { m["pcrValues"] = [][]byte{make([]byte, 32), make([]byte, 31)} }), false},
		{"counter index not NV", rewrite(t, func(m map[string]any) { m["counterIndex"] = 0x81000001 }), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSealed(tc.data)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(s, fixture) {
					t.Errorf("parsed %+v, want %+v", s, fixture)
				}
				return
			}
			if err == nil {
				t.Fatalf("parsed %+v", s)
			}
			if !errors.Is(err, ErrInvalidSealed) {
				t.Errorf("%v does not wrap ErrInvalidSealed", err)
			}
		})
	}
}

func TestReadSealedBounded(t *testing.T) {
	big := strings.NewReader(`{"public":"` + strings.Repeat("A", 4*MaxSealedSize) + `"}`)
	if _, err := ReadSealed(big); !errors.Is(err, ErrInvalidSealed) {
		t.Errorf("oversized file: %v", err)
	}
	if rest := big.Len(); rest < 2*MaxSealedSize {
		t.Errorf("ReadSealed read %d bytes of an oversized file", 4*MaxSealedSize+14-rest)
	}
}

// FuzzParseSealed: whatever an attacker writes to the sealed file,
// parsing returns an error or a Sealed that survives a round trip; it
// never panics.
func FuzzParseSealed(f *testing.F) {
	for _, fx := range fixtures {
		b, err := os.ReadFile(filepath.Join("testdata", fx.file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"public":"AAA=","private":"AAA=","generation":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSealed(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSealed) {
				t.Fatalf("error %v does not wrap ErrInvalidSealed", err)
			}
			return
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSealed(b)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(normalize(s), normalize(again)) {
			t.Fatalf("round trip changed %+v to %+v", s, again)
		}
	})
}

// normalize maps empty slices to nil, which JSON does not tell apart.
func normalize(s *Sealed) *Sealed {
	c := *s
	if len(c.PCRs) == 0 {
		c.PCRs = nil
	}
	if len(c.PCRValues) == 0 {
		c.PCRValues = nil
	}
	return &c
}

// FuzzSealedStructures feeds go-tpm's decoder the raw TPM structures of
// a sealed file, where an attacker's bytes reach reflection-driven code.
func FuzzSealedStructures(f *testing.F) {
	for _, fx := range fixtures {
		s := readFixture(f, fx.file)
		f.Add(s.Public, s.Private)
	}
	f.Fuzz(func(t *testing.T, public, private []byte) {
		s := &Sealed{Public: public, Private: private, Generation: 1}
		if _, err := s.decode(); err != nil && !errors.Is(err, ErrInvalidSealed) {
			t.Fatalf("error %v does not wrap ErrInvalidSealed", err)
		}
	})
}

// FuzzReadResponse: a swtpm socket (or whatever listens on its port)
// cannot make the transport read more than maxResponseSize or return a
// response other than the one its header announces.
func FuzzReadResponse(f *testing.F) {
	f.Add(response(10, 0, nil))
	f.Add(response(14, 0, []byte{1, 2, 3, 4}))
	f.Add(response(maxResponseSize+1, 0, nil))
	f.Add([]byte{0x80, 0x01, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		rsp, err := readResponse(r)
		if err != nil {
			return
		}
		if len(rsp) < responseHeaderSize || len(rsp) > maxResponseSize {
			t.Fatalf("response of %d bytes", len(rsp))
		}
		if !bytes.Equal(rsp, data[:len(rsp)]) {
			t.Fatal("response differs from the bytes read")
		}
		if int(r.Size())-r.Len() != len(rsp) {
			t.Fatalf("read %d bytes for a %d-byte response", int(r.Size())-r.Len(), len(rsp))
		}
	})
}
