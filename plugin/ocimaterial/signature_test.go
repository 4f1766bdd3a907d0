package ocimaterial

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/artifact"
)

func readTestdata(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func defaultLimits() Limits {
	l, _ := Limits{}.WithDefaults()
	return l
}

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func TestParseCosignFixture(t *testing.T) {
	layers, err := ParseSignatureManifest(readTestdata(t, "cosign-signature-manifest.json"), defaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 || layers[0].MediaType != SimpleSigningMediaType {
		t.Fatalf("layers = %+v", layers)
	}
	payload := readTestdata(t, "cosign-payload.json")
	if err := CheckBlob(layers[0].Digest, layers[0].Size, payload); err != nil {
		t.Fatalf("fixture payload does not match its descriptor: %v", err)
	}
	sig := NewSignature(layers[0], payload, "sha256:x", "origin")
	block, _ := pem.Decode(readTestdata(t, "cosign.pub"))
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(sig.Payload)
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], sig.Signature) {
		t.Fatal("fixture signature does not verify")
	}
}

func TestParseSignatureManifest(t *testing.T) {
	digest := "sha256:" + strings.Repeat("a", 64)
	layer := func(extra string) string {
		return `{"mediaType":"` + SimpleSigningMediaType + `","size":10,"digest":"` + digest + `"` + extra + `}`
	}
	manifest := func(layers ...string) string {
		return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[` + strings.Join(layers, ",") + `]}`
	}
	tests := []struct {
		name      string
		body      string
		limits    Limits
		wantN     int
		wantErr   bool
		wantLimit bool
	}{
		{name: "one layer", body: manifest(layer(`,"annotations":{"a":"b"}`)), wantN: 1},
		{name: "docker media type", body: `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[` + layer("") + `]}`, wantN: 1},
		{name: "no media type", body: `{"schemaVersion":2,"layers":[` + layer("") + `]}`, wantN: 1},
		{name: "no layers", body: `{"schemaVersion":2,"layers":null}`, wantN: 0},
		{name: "keyless fixture", body: string(readTestdata(t, "keyless-signature-manifest.json")), wantN: 1},
		{name: "too many layers: the first are kept", body: manifest(layer(""), layer(""), layer("")), limits: Limits{Signatures: 2}, wantN: 2},
		{name: "layer too large: skipped", body: manifest(layer(""), `{"size":1,"digest":"`+digest+`"}`), limits: Limits{PayloadBytes: 9}, wantN: 1},
		{name: "negative size: skipped", body: manifest(`{"size":-1,"digest":"`+digest+`"}`, layer("")), wantN: 1},
		{name: "missing size: skipped", body: manifest(`{"digest":"`+digest+`"}`, layer("")), wantN: 1},
		{name: "fractional size: skipped", body: manifest(`{"size":1.5,"digest":"`+digest+`"}`, layer("")), wantN: 1},
		{name: "bad digest: skipped", body: manifest(`{"size":1,"digest":"sha256:xyz"}`, layer("")), wantN: 1},
		{name: "unknown digest algorithm: skipped", body: manifest(`{"size":1,"digest":"md5:`+strings.Repeat("a", 32)+`"}`, layer("")), wantN: 1},
		{name: "annotation not a string: skipped", body: manifest(layer(`,"annotations":{"a":1}`), layer("")), wantN: 1},
		{name: "annotations not an object: skipped", body: manifest(layer(`,"annotations":["a"]`), layer("")), wantN: 1},
		{name: "index media type", body: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, wantErr: true},
		{name: "layers and manifests", body: `{"schemaVersion":2,"layers":[],"manifests":[]}`, wantErr: true},
		{name: "schema 1", body: `{"schemaVersion":1,"layers":[]}`, wantErr: true},
		{name: "no schema version", body: `{"layers":[]}`, wantErr: true},
		{name: "duplicate key", body: `{"schemaVersion":2,"layers":[],"layers":[` + layer("") + `]}`, wantErr: true},
		{name: "duplicate annotation", body: manifest(layer(`,"annotations":{"a":"1","a":"2"}`)), wantErr: true},
		{name: "trailing data", body: manifest() + `{}`, wantErr: true},
		{name: "not an object", body: `[1,2]`, wantErr: true},
		{name: "empty", body: ``, wantErr: true},
		{name: "truncated", body: `{"schemaVersion":2,"layers":[`, wantErr: true},
		{name: "layer not an object: skipped", body: manifest(`"x"`, layer("")), wantN: 1},
		{name: "deep nesting", body: `{"schemaVersion":2,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim, err := tc.limits.WithDefaults()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseSignatureManifest([]byte(tc.body), lim)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if errors.Is(err, ErrLimit) != tc.wantLimit {
				t.Fatalf("err = %v, want ErrLimit %v", err, tc.wantLimit)
			}
			if err == nil && len(got) != tc.wantN {
				t.Fatalf("got %d layers, want %d", len(got), tc.wantN)
			}
		})
	}
}

func TestNewSignature(t *testing.T) {
	l := Layer{Annotations: map[string]string{
		AnnotationSignature:   "c2ln",
		AnnotationCertificate: "CERT",
		AnnotationChain:       "CHAIN",
		AnnotationBundle:      "BUNDLE",
		AnnotationTimestamp:   "TSA",
		"other":               "ignored",
	}}
	got := NewSignature(l, []byte("payload"), "sha256:x", "repo:tag layer 0")
	want := artifact.Signature{Payload: []byte("payload"), Signature: []byte("sig"), Certificate: []byte("CERT"),
		Chain: []byte("CHAIN"), RekorBundle: []byte("BUNDLE"), Attached: "sha256:x", Origin: "repo:tag layer 0"}
	if string(got.Payload) != string(want.Payload) || string(got.Signature) != string(want.Signature) ||
		string(got.Certificate) != string(want.Certificate) || string(got.Chain) != string(want.Chain) ||
		string(got.RekorBundle) != string(want.RekorBundle) || string(got.Timestamp) != "TSA" ||
		got.Attached != want.Attached || got.Origin != want.Origin {
		t.Fatalf("got %+v, want %+v", got, want)
	}

	bad := NewSignature(Layer{Annotations: map[string]string{AnnotationSignature: "%%%"}}, nil, "", "o")
	if len(bad.Signature) != 0 || !strings.Contains(bad.Origin, "not valid base64") {
		t.Fatalf("bad base64: %+v", bad)
	}
	none := NewSignature(Layer{}, nil, "", "o")
	if none.Signature != nil || none.Certificate != nil || none.Timestamp != nil || none.Origin != "o" {
		t.Fatalf("no annotations: %+v", none)
	}
}

func TestCheckBlob(t *testing.T) {
	b := []byte("hello")
	h, _, _ := v1.SHA256(strings.NewReader("hello"))
	if err := CheckBlob(h, 5, b); err != nil {
		t.Fatal(err)
	}
	if err := CheckBlob(h, 4, b); err == nil {
		t.Error("size mismatch accepted")
	}
	if err := CheckBlob(h, 5, []byte("hellO")); err == nil {
		t.Error("digest mismatch accepted")
	}
	sum := sha512.Sum512(b)
	h512 := v1.Hash{Algorithm: "sha512", Hex: hex.EncodeToString(sum[:])}
	if err := CheckBlob(h512, 5, b); err != nil {
		t.Errorf("sha512: %v", err)
	}
}

func TestParseDescription(t *testing.T) {
	tests := []struct {
		name         string
		body         string
		contentType  string
		wantType     string
		wantChildren []string // "platform" per child
		wantErr      bool
	}{
		{name: "oci index", body: string(readTestdata(t, "oci-index.json")), wantType: MediaTypeOCIIndex,
			wantChildren: []string{"linux/amd64", "linux/arm64/v8", "unknown/unknown"}},
		{name: "docker list", body: string(readTestdata(t, "docker-manifest-list.json")), wantType: MediaTypeDockerList,
			wantChildren: []string{"linux/arm/v7"}},
		{name: "docker manifest", body: string(readTestdata(t, "docker-manifest.json")), wantType: MediaTypeDockerManifest},
		{name: "type from header", body: `{"schemaVersion":2,"manifests":[]}`, contentType: MediaTypeDockerList + "; charset=utf-8", wantType: MediaTypeDockerList},
		{name: "body wins over header", body: `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[]}`, contentType: MediaTypeOCIManifest, wantType: MediaTypeOCIIndex},
		{name: "inferred index", body: `{"schemaVersion":2,"manifests":[]}`, wantType: MediaTypeOCIIndex},
		{name: "inferred manifest", body: `{"schemaVersion":2,"layers":[]}`, wantType: MediaTypeOCIManifest},
		{name: "child without platform", body: `{"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"digest":"sha256:` + strings.Repeat("1", 64) + `"}]}`,
			wantType: MediaTypeOCIIndex, wantChildren: []string{""}},
		{name: "child with os only", body: `{"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"digest":"sha256:` + strings.Repeat("1", 64) + `","platform":{"os":"linux"}}]}`,
			wantType: MediaTypeOCIIndex, wantChildren: []string{""}},
		{name: "manifest header but manifests in body", body: `{"schemaVersion":2,"manifests":[]}`, contentType: MediaTypeOCIManifest, wantErr: true},
		{name: "index with layers", body: `{"mediaType":"` + MediaTypeOCIIndex + `","manifests":[],"layers":[]}`, wantErr: true},
		{name: "manifest with manifests", body: `{"mediaType":"` + MediaTypeOCIManifest + `","manifests":[],"layers":[]}`, wantErr: true},
		{name: "unknown shape", body: `{"schemaVersion":2}`, wantErr: true},
		{name: "bad child digest", body: `{"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"digest":"sha256:1"}]}`, wantErr: true},
		{name: "slash in platform", body: `{"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"digest":"sha256:` + strings.Repeat("1", 64) + `","platform":{"os":"linux/amd64","architecture":"x"}}]}`, wantErr: true},
		{name: "platform not an object", body: `{"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"digest":"sha256:` + strings.Repeat("1", 64) + `","platform":"linux/amd64"}]}`, wantErr: true},
		{name: "duplicate media type", body: `{"mediaType":"` + MediaTypeOCIManifest + `","layers":[],"mediaType":"` + MediaTypeOCIIndex + `"}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			got, err := ParseDescription(digestOf(body), tc.contentType, body)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got.MediaType != tc.wantType || got.Digest != digestOf(body).String() {
				t.Fatalf("got %+v, want media type %s", got, tc.wantType)
			}
			if len(got.Children) != len(tc.wantChildren) {
				t.Fatalf("children = %+v, want platforms %v", got.Children, tc.wantChildren)
			}
			for i, p := range tc.wantChildren {
				if got.Children[i].Platform != p || got.Children[i].Digest == "" {
					t.Errorf("child %d = %+v, want platform %q", i, got.Children[i], p)
				}
			}
		})
	}
	// Bytes that do not hash to the requested digest are refused first.
	body := readTestdata(t, "oci-index.json")
	if _, err := ParseDescription(digestOf([]byte("other")), "", body); err == nil {
		t.Fatal("digest mismatch accepted")
	}
}

func TestCheckJSON(t *testing.T) {
	tests := []struct {
		body    string
		wantErr bool
	}{
		{`{}`, false},
		{`{"a":{"a":1},"b":[{"a":1},{"a":2}]}`, false},
		{`{"a":1,"A":2}`, false}, // exact-case keys are distinct
		{`{"a":1,"a":2}`, true},
		{`{"x":{"a":1,"a":2}}`, true},
		{`[{"a":[],"a":{}}]`, true},
		{`{"a":"a","b":"a"}`, false}, // a string value equal to a key
		{`{} {}`, true},
		{`{}x`, true},
		{``, true},
		{`{"a":}`, true},
	}
	for _, tc := range tests {
		if err := CheckJSON([]byte(tc.body)); (err != nil) != tc.wantErr {
			t.Errorf("CheckJSON(%s) = %v, wantErr %v", tc.body, err, tc.wantErr)
		}
	}
}
