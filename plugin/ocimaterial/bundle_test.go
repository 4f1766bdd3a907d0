package ocimaterial

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestIsBundleMediaType(t *testing.T) {
	for mt, want := range map[string]bool{
		"application/vnd.dev.sigstore.bundle.v0.3+json":          true,
		"application/vnd.dev.sigstore.bundle+json;version=0.1":   true,
		"application/vnd.dev.sigstore.bundle+json;version=0.2":   true,
		"application/vnd.dev.sigstore.bundle+json;version=0.3":   true,
		"application/vnd.dev.sigstore.bundle+json; version=0.3":  false, // exact, as sigstore-go
		"application/vnd.dev.sigstore.bundle+json":               false,
		"application/vnd.dev.sigstore.bundle.v0.4+json":          false,
		"application/vnd.dev.sigstore.bundle+json;version=0.3.1": false,
		"APPLICATION/VND.DEV.SIGSTORE.BUNDLE.V0.3+JSON":          false,
		MediaTypeEmptyConfig: false,
		"":                   false,
	} {
		if got := IsBundleMediaType(mt); got != want {
			t.Errorf("IsBundleMediaType(%q) = %v, want %v", mt, got, want)
		}
	}
}

func TestBundleLayer(t *testing.T) {
	subject := "sha256:" + strings.Repeat("5", 64)
	other := "sha256:" + strings.Repeat("6", 64)
	layer := func(mt string, size int) string {
		return fmt.Sprintf(`{"mediaType":%q,"size":%d,"digest":"sha256:%s"}`, mt, size, strings.Repeat("7", 64))
	}
	manifest := func(artifactType, configType, subj string, layers ...string) string {
		s := `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `"`
		if artifactType != "" {
			s += `,"artifactType":"` + artifactType + `"`
		}
		if configType != "" {
			s += `,"config":{"mediaType":"` + configType + `","size":2,"digest":"sha256:` + strings.Repeat("8", 64) + `"}`
		}
		if subj != "" {
			s += `,"subject":{"mediaType":"` + MediaTypeOCIManifest + `","size":1,"digest":"` + subj + `"}`
		}
		return s + `,"layers":[` + strings.Join(layers, ",") + `]}`
	}
	v03 := BundleMediaTypeV03Alt
	tests := []struct {
		name      string
		body      string
		limits    Limits
		want      bool
		wantErr   bool
		wantLimit bool
	}{
		{name: "cosign", body: string(readTestdata(t, "cosign-bundle-manifest.json")), want: false}, // another subject
		{name: "bundle", body: manifest(v03, MediaTypeEmptyConfig, subject, layer(v03, 10)), want: true},
		{name: "v0.1 layer in a v0.3 manifest", body: manifest(v03, MediaTypeEmptyConfig, subject, layer(BundleMediaTypeV01, 10)), want: true},
		{name: "type from config", body: manifest("", BundleMediaTypeV02, subject, layer(BundleMediaTypeV02, 10)), want: true},
		{name: "artifactType wins over config", body: manifest("application/spdx+json", v03, subject, layer(v03, 10)), want: false},
		{name: "empty config only", body: manifest("", MediaTypeEmptyConfig, subject, layer(v03, 10)), want: false},
		{name: "other artifact type", body: manifest("application/spdx+json", MediaTypeEmptyConfig, subject, layer(v03, 10)), want: false},
		{name: "type with a space", body: manifest("application/vnd.dev.sigstore.bundle+json; version=0.3", "", subject, layer(v03, 10)), want: false},
		{name: "another subject", body: manifest(v03, MediaTypeEmptyConfig, other, layer(v03, 10)), want: false},
		{name: "no subject", body: manifest(v03, MediaTypeEmptyConfig, "", layer(v03, 10)), want: false},
		{name: "an index", body: `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","artifactType":"` + v03 + `","manifests":[],"subject":{"digest":"` + subject + `"}}`, want: false},
		{name: "an artifact manifest", body: `{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json","artifactType":"` + v03 + `","blobs":[` + layer(v03, 1) + `],"subject":{"digest":"` + subject + `"}}`, want: false},
		{name: "no media type", body: strings.Replace(manifest(v03, "", subject, layer(v03, 10)), `"mediaType":"`+MediaTypeOCIManifest+`",`, "", 1), want: true},
		{name: "two layers", body: manifest(v03, "", subject, layer(v03, 10), layer(v03, 10)), wantErr: true},
		{name: "no layers", body: manifest(v03, "", subject), wantErr: true},
		{name: "layer not a bundle", body: manifest(v03, "", subject, layer("application/json", 10)), wantErr: true},
		{name: "bundle too large", body: manifest(v03, "", subject, layer(v03, 1025)), limits: Limits{BundleBytes: 1024}, wantErr: true, wantLimit: true},
		{name: "bundle at the limit", body: manifest(v03, "", subject, layer(v03, 1024)), limits: Limits{BundleBytes: 1024}, want: true},
		{name: "layer without size", body: manifest(v03, "", subject, `{"mediaType":"`+v03+`","digest":"`+subject+`"}`), wantErr: true},
		{name: "bad subject digest", body: manifest(v03, "", "sha256:zz", layer(v03, 10)), wantErr: true},
		{name: "subject not an object", body: `{"schemaVersion":2,"artifactType":"` + v03 + `","subject":"` + subject + `","layers":[]}`, wantErr: true},
		{name: "index with layers", body: `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","layers":[]}`, wantErr: true},
		{name: "layers and manifests", body: `{"schemaVersion":2,"layers":[],"manifests":[]}`, wantErr: true},
		{name: "schema 1", body: `{"schemaVersion":1,"layers":[]}`, wantErr: true},
		{name: "duplicate artifactType", body: `{"schemaVersion":2,"artifactType":"x/y","artifactType":"` + v03 + `","layers":[]}`, wantErr: true},
		{name: "not JSON", body: `{`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim, err := tc.limits.WithDefaults()
			if err != nil {
				t.Fatal(err)
			}
			h, _ := v1.NewHash(subject)
			m, err := ParseReferrerManifest([]byte(tc.body))
			var ok bool
			if err == nil {
				_, ok, err = BundleLayer(m, h, lim)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if errors.Is(err, ErrLimit) != tc.wantLimit {
				t.Fatalf("err = %v, want ErrLimit %v", err, tc.wantLimit)
			}
			if ok != tc.want {
				t.Fatalf("selected = %v, want %v", ok, tc.want)
			}
		})
	}
}

func TestParseAttestationManifest(t *testing.T) {
	layer := func(mt string, size int, ann string) string {
		s := fmt.Sprintf(`{"mediaType":%q,"size":%d,"digest":"sha256:%s"`, mt, size, strings.Repeat("a", 64))
		if ann != "" {
			s += `,"annotations":` + ann
		}
		return s + "}"
	}
	manifest := func(layers ...string) string {
		return `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `","layers":[` + strings.Join(layers, ",") + `]}`
	}
	tests := []struct {
		name      string
		body      string
		limits    Limits
		wantN     int
		wantErr   bool
		wantLimit bool
	}{
		{name: "cosign", body: string(readTestdata(t, "cosign-attestation-manifest.json")), wantN: 1},
		{name: "two", body: manifest(layer(DSSEMediaType, 10, ""), layer(DSSEMediaType, 10, `{"predicateType":"x"}`)), wantN: 2},
		{name: "none", body: manifest(), wantN: 0},
		{name: "not DSSE: skipped", body: manifest(layer(SimpleSigningMediaType, 10, ""), layer(DSSEMediaType, 10, "")), wantN: 1},
		{name: "no media type: skipped", body: manifest(`{"size":1,"digest":"sha256:` + strings.Repeat("a", 64) + `"}`), wantN: 0},
		{name: "envelope too large: skipped", body: manifest(layer(DSSEMediaType, 1025, "")), limits: Limits{EnvelopeBytes: 1024}, wantN: 0},
		{name: "payload limit does not apply", body: manifest(layer(DSSEMediaType, 1025, "")), limits: Limits{PayloadBytes: 1024}, wantN: 1},
		{name: "too many: the first is kept", body: manifest(layer(DSSEMediaType, 1, ""), layer(DSSEMediaType, 1, "")), limits: Limits{Signatures: 1}, wantN: 1},
		{name: "index", body: `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[]}`, wantErr: true},
		{name: "duplicate key", body: `{"schemaVersion":2,"layers":[],"layers":[]}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim, err := tc.limits.WithDefaults()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseAttestationManifest([]byte(tc.body), lim)
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

func TestNewAttestation(t *testing.T) {
	l := Layer{Annotations: map[string]string{
		AnnotationSignature:   "", // cosign writes it empty on attestations
		AnnotationCertificate: "CERT",
		AnnotationChain:       "CHAIN",
		AnnotationBundle:      "BUNDLE",
		AnnotationTimestamp:   "TSA",
		"predicateType":       "https://slsa.dev/provenance/v1",
	}}
	env := []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}`)
	a := NewAttestation(l, env, "sha256:x", "o")
	if string(a.Envelope) != string(env) || string(a.Certificate) != "CERT" || string(a.Chain) != "CHAIN" ||
		string(a.RekorBundle) != "BUNDLE" || string(a.Timestamp) != "TSA" || a.Attached != "sha256:x" || a.Origin != "o" {
		t.Fatalf("got %+v", a)
	}
	env[0] = 'X'
	if a.Envelope[0] == 'X' {
		t.Fatal("the envelope shares the caller's buffer")
	}
	if none := NewAttestation(Layer{}, nil, "", "o"); none.Certificate != nil || none.Timestamp != nil {
		t.Fatalf("no annotations: %+v", none)
	}
}
