package strictjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type inner struct {
	Digest string `json:"digest"`
}

type base struct {
	Kind string `json:"kind"`
}

type doc struct {
	base
	MediaType string            `json:"mediaType"`
	Layers    []inner           `json:"layers,omitempty"`
	ByName    map[string]inner  `json:"byName,omitempty"`
	Raw       json.RawMessage   `json:"raw,omitempty"`
	Notes     map[string]string `json:"notes,omitempty"`
	Skipped   string            `json:"-"`
	Plain     int
}

func TestUnmarshal(t *testing.T) {
	tests := []struct {
		name, in, want string // want: "" for success, else a part of the error
	}{
		{"valid", `{"kind":"k","mediaType":"m","layers":[{"digest":"d"}],"byName":{"a":{"digest":"e"}},"raw":{"Any":1,"any":2},"Plain":3}`, ""},
		{"duplicate key", `{"mediaType":"a","mediaType":"b"}`, `duplicate key "mediaType"`},
		{"duplicate key in a nested array", `{"layers":[{"digest":"a","digest":"b"}]}`, `duplicate key "digest" in layers[0]`},
		{"duplicate key inside raw", `{"raw":{"a":1,"a":2}}`, `duplicate key "a" in raw`},
		{"key differing in case", `{"MediaType":"m"}`, `unknown field "MediaType"`},
		{"nested key differing in case", `{"layers":[{"Digest":"d"}]}`, `unknown field "Digest" in layers[0]`},
		{"unknown field", `{"mediaType":"m","extra":1}`, `unknown field "extra"`},
		{"unknown field in a map value", `{"byName":{"x":{"size":1}}}`, `unknown field "size" in byName.x`},
		{"field named by -", `{"Skipped":"x"}`, `unknown field "Skipped"`},
		{"embedded field", `{"kind":"k"}`, ""},
		{"trailing data", `{"kind":"k"} {}`, "data after the top-level value"},
		{"truncated", `{"kind":`, "truncated"},
		{"empty", ``, "truncated"},
		{"invalid UTF-8", "{\"kind\":\"\xff\"}", "not valid UTF-8"},
		{"too deep", `{"raw":` + strings.Repeat("[", 10) + strings.Repeat("]", 10) + `}`, "nested deeper than 8"},
		{"wrong type", `{"kind":1}`, "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := Unmarshal([]byte(tt.in), &d, 8)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid)):
				t.Fatalf("error %v, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
}

func TestDecodeFloats(t *testing.T) {
	v, err := Decode([]byte(`{"n":1.5,"m":[2]}`), Options{Floats: true})
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	if m["n"] != 1.5 || m["m"].([]any)[0] != 2.0 {
		t.Errorf("decoded %#v", v)
	}
	if _, err := Decode([]byte(`1e400`), Options{Floats: true}); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("a number out of float64's range: %v", err)
	}
	v, err = Decode([]byte(`123456789012345678901234567890`), Options{})
	if err != nil || v.(json.Number) != "123456789012345678901234567890" {
		t.Errorf("json.Number kept: %v %v", v, err)
	}
}

func TestUnmarshalNeedsPointer(t *testing.T) {
	var d doc
	if err := Unmarshal([]byte(`{}`), d, 0); err == nil {
		t.Error("a non-pointer was accepted")
	}
}

// FuzzDecode: whatever the bytes, Decode neither panics nor accepts what
// encoding/json considers invalid, and Unmarshal agrees with Decode.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":1,"a":2}`, `{"kind":"k","layers":[{"digest":"d"}]}`, `"x"`, `{"raw":[[[[]]]]}`, "\xff", `1 2`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b, Options{MaxDepth: 16})
		if err == nil && !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q as %#v", b, v)
		}
		var d doc
		if uerr := Unmarshal(b, &d, 16); uerr == nil && err != nil {
			t.Fatalf("Unmarshal accepted what Decode refused: %v", err)
		}
	})
}
