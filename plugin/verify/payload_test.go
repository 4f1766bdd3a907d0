package verify

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"
)

const zeroDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

func TestParsePayload(t *testing.T) {
	sha512 := "sha512:" + strings.Repeat("ab", 64)
	tests := []struct {
		name    string
		in      string
		want    *Payload // nil means an error is expected
		wantErr string   // substring of the error
	}{
		{name: "cosign", in: `{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/app"},"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"},"optional":null}`,
			want: &Payload{Type: CosignSignatureType, DockerReference: "127.0.0.1:5000/app", Digest: zeroDigest}},
		{name: "atomic with optional", in: `{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"` + sha512 + `"},"type":"atomic container signature"},"optional":{"creator":"podman","timestamp":1}}`,
			want: &Payload{Type: AtomicSignatureType, DockerReference: "x", Digest: sha512, Optional: map[string]any{"creator": "podman", "timestamp": json.Number("1")}}},
		{name: "no identity", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"}}`,
			want: &Payload{Type: CosignSignatureType, Digest: zeroDigest}},
		{name: "whitespace around", in: " \n{\"critical\":{\"image\":{\"docker-manifest-digest\":\"" + zeroDigest + "\"},\"type\":\"cosign container image signature\"}}\n",
			want: &Payload{Type: CosignSignatureType, Digest: zeroDigest}},
		{name: "empty", in: ``, wantErr: "empty"},
		{name: "not json", in: `not json`, wantErr: "invalid JSON"},
		{name: "truncated", in: `{"critical":{`, wantErr: "invalid JSON: truncated"},
		{name: "array", in: `[]`, wantErr: "document is not a JSON object"},
		{name: "string", in: `"x"`, wantErr: "document is not a JSON object"},
		{name: "missing critical", in: `{"optional":{}}`, wantErr: "critical is missing"},
		{name: "critical not object", in: `{"critical":[]}`, wantErr: "critical is not a JSON object"},
		{name: "missing type", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"}}}`, wantErr: "critical.type is missing"},
		{name: "wrong type", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signaturE"}}`, wantErr: `critical.type "cosign container image signaturE" is not`},
		{name: "type not string", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":1}}`, wantErr: "critical.type is not a string"},
		{name: "missing image", in: `{"critical":{"type":"cosign container image signature"}}`, wantErr: "critical.image is missing"},
		{name: "missing digest", in: `{"critical":{"image":{},"type":"cosign container image signature"}}`, wantErr: "critical.image.docker-manifest-digest is missing"},
		{name: "digest not string", in: `{"critical":{"image":{"docker-manifest-digest":null},"type":"cosign container image signature"}}`, wantErr: "docker-manifest-digest is not a string"},
		{name: "upper-case digest", in: `{"critical":{"image":{"docker-manifest-digest":"` + strings.ToUpper(zeroDigest[:7]) + zeroDigest[7:] + `"},"type":"cosign container image signature"}}`, wantErr: "is not a sha256 or sha512 digest"},
		{name: "upper-case hex", in: `{"critical":{"image":{"docker-manifest-digest":"sha256:` + strings.Repeat("A", 64) + `"},"type":"cosign container image signature"}}`, wantErr: "is not a sha256 or sha512 digest"},
		{name: "short digest", in: `{"critical":{"image":{"docker-manifest-digest":"sha256:abc"},"type":"cosign container image signature"}}`, wantErr: "is not a sha256 or sha512 digest"},
		{name: "sha384 digest", in: `{"critical":{"image":{"docker-manifest-digest":"sha384:` + strings.Repeat("a", 96) + `"},"type":"cosign container image signature"}}`, wantErr: "is not a sha256 or sha512 digest"},
		{name: "reference not string", in: `{"critical":{"identity":{"docker-reference":1},"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"}}`, wantErr: "docker-reference is not a string"},
		{name: "identity not object", in: `{"critical":{"identity":"x","image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"}}`, wantErr: "critical.identity is not a JSON object"},
		{name: "duplicate top-level key", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"},"critical":{}}`, wantErr: `duplicate key "critical"`},
		{name: "duplicate digest", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `","docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"}}`, wantErr: `duplicate key "docker-manifest-digest" in critical.image`},
		{name: "duplicate key inside optional", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"},"optional":{"a":[{"b":1,"b":2}]}}`, wantErr: `duplicate key "b" in optional.a[0]`},
		{name: "case variant of a key", in: `{"Critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"}}`, wantErr: `unknown key "Critical" in document`},
		{name: "unknown key in critical", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature","extra":1}}`, wantErr: `unknown key "extra" in critical`},
		{name: "unknown key in image", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `","Docker-manifest-digest":"x"},"type":"cosign container image signature"}}`, wantErr: `unknown key "Docker-manifest-digest" in critical.image`},
		{name: "trailing data", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"}}{}`, wantErr: "data after the top-level value"},
		{name: "trailing garbage", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"}} x`, wantErr: "data after the top-level value"},
		{name: "invalid utf-8", in: "{\"critical\":\"\xff\"}", wantErr: "not valid UTF-8"},
		{name: "too deep", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"},"optional":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, wantErr: "nested deeper than 32"},
		{name: "too large", in: `{"critical":{"image":{"docker-manifest-digest":"` + zeroDigest + `"},"type":"cosign container image signature"},"optional":"` + strings.Repeat("x", MaxPayloadSize) + `"}`, wantErr: "exceeds the 262144 byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePayload([]byte(tt.in))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("ParsePayload succeeded: %+v", got)
				}
				if !errors.Is(err, ErrPayload) {
					t.Errorf("err %v does not wrap ErrPayload", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePayload: %v", err)
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tt.want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("got %s, want %s", gotJSON, wantJSON)
			}
		})
	}
}

func TestValidDigest(t *testing.T) {
	tests := map[string]bool{
		zeroDigest:                                 true,
		"sha512:" + strings.Repeat("f", 128):       true,
		"sha256:" + strings.Repeat("f", 63):        false,
		"sha256:" + strings.Repeat("f", 65):        false,
		"sha256:" + strings.Repeat("g", 64):        false,
		"sha512:" + strings.Repeat("f", 64):        false,
		"sha256" + strings.Repeat("f", 65):         false,
		"SHA256:" + strings.Repeat("f", 64):        false,
		"sha256:" + strings.Repeat("F", 64):        false,
		"":                                         false,
		"sha256:":                                  false,
		" sha256:" + strings.Repeat("f", 64):       false,
		"sha256:" + strings.Repeat("f", 64) + "\n": false,
	}
	for d, want := range tests {
		if got := ValidDigest(d); got != want {
			t.Errorf("ValidDigest(%q) = %v, want %v", d, got, want)
		}
	}
}

// FuzzParsePayload checks that ParsePayload never panics, that whatever it
// accepts has a well-formed digest and type, and that encoding/json (what
// cosign and sigstore read payloads with) reads the same critical fields
// from it: a strict parser must not accept a document others read
// differently.
func FuzzParsePayload(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "payloads", "*.json"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/payloads: %v", err)
	}
	for _, s := range append(seeds, filepath.Join("testdata", "cosign", "payload.json")) {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePayload(b)
		if err != nil {
			if p != nil || !errors.Is(err, ErrPayload) {
				t.Fatalf("error %v with payload %+v, or not wrapping ErrPayload", err, p)
			}
			return
		}
		if !ValidDigest(p.Digest) {
			t.Fatalf("accepted invalid digest %q", p.Digest)
		}
		if p.Type != CosignSignatureType && p.Type != AtomicSignatureType {
			t.Fatalf("accepted type %q", p.Type)
		}
		var std struct{ Critical sigpayload.Critical }
		if err := json.Unmarshal(b, &std); err != nil {
			t.Fatalf("accepted a payload encoding/json rejects: %v", err)
		}
		if std.Critical.Image.DockerManifestDigest != p.Digest || std.Critical.Type != p.Type || std.Critical.Identity.DockerReference != p.DockerReference {
			t.Fatalf("encoding/json reads %+v, ParsePayload %+v", std.Critical, p)
		}
	})
}
