package source

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
)

func TestAttestationAndReferrersTags(t *testing.T) {
	h256 := strings.Repeat("ab", 32)
	h512 := strings.Repeat("cd", 64)
	tests := []struct {
		ref, att, referrers string
	}{
		{"127.0.0.1:5000/app@sha256:" + h256, "127.0.0.1:5000/app:sha256-" + h256 + ".att", "127.0.0.1:5000/app:sha256-" + h256},
		{"registry.example.com/a/b@sha512:" + h512, "registry.example.com/a/b:sha512-" + h512 + ".att", "registry.example.com/a/b:sha512-" + h512},
	}
	for _, tc := range tests {
		d, err := name.NewDigest(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		att, err := AttestationTag(d)
		if err != nil || att.String() != tc.att {
			t.Errorf("AttestationTag(%s) = %s, %v; want %s", tc.ref, att, err, tc.att)
		}
		ref, err := ReferrersTag(d)
		if err != nil || ref.String() != tc.referrers {
			t.Errorf("ReferrersTag(%s) = %s, %v; want %s", tc.ref, ref, err, tc.referrers)
		}
	}
}

// What cosign v2.6.5 wrote with --new-bundle-format (testdata): the
// referrers API listing, the fallback index (whose entry reports the empty
// config type, not the bundle type), the bundle manifest and the bundle.
func TestParseCosignReferrerFixtures(t *testing.T) {
	lim := defaultLimits()
	manifest := readTestdata(t, "cosign-bundle-manifest.json")
	for _, file := range []string{"cosign-referrers.json", "cosign-referrers-fallback.json"} {
		refs, err := parseReferrers(readTestdata(t, file), lim)
		if err != nil || len(refs) != 1 {
			t.Fatalf("%s: %+v, %v", file, refs, err)
		}
	}
	fallback, _ := parseReferrers(readTestdata(t, "cosign-referrers-fallback.json"), lim)
	if fallback[0].Digest != digestOf(manifest) || fallback[0].ArtifactType != ocimaterial.MediaTypeEmptyConfig {
		t.Fatalf("fallback entry %+v does not name the bundle manifest %s", fallback[0], digestOf(manifest))
	}
	m, err := ocimaterial.ParseReferrerManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := v1.NewHash(m.Subject)
	l, ok, err := ocimaterial.BundleLayer(m, subject, lim)
	if err != nil || !ok {
		t.Fatalf("ocimaterial.BundleLayer: %v, %v", ok, err)
	}
	if m.ArtifactType != ocimaterial.BundleMediaTypeV03Alt || l.MediaType != ocimaterial.BundleMediaTypeV03Alt {
		t.Fatalf("artifact type %q, layer %q", m.ArtifactType, l.MediaType)
	}
	bundle := readTestdata(t, "cosign-bundle.json")
	if err := ocimaterial.CheckBlob(l.Digest, l.Size, bundle); err != nil {
		t.Fatalf("bundle fixture does not match its layer: %v", err)
	}
	var b struct {
		MediaType    string `json:"mediaType"`
		DSSEEnvelope struct {
			Payload string `json:"payload"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(bundle, &b); err != nil || b.MediaType != ocimaterial.BundleMediaTypeV03Alt {
		t.Fatalf("bundle: %+v, %v", b, err)
	}
	stmt := decodeStatement(t, b.DSSEEnvelope.Payload)
	if stmt.digest() != subject.Hex {
		t.Fatalf("statement subject %q, manifest subject %s", stmt.digest(), subject)
	}
}

// The attestation manifest and envelope cosign attest wrote (testdata).
func TestParseCosignAttestationFixture(t *testing.T) {
	layers, err := ocimaterial.ParseAttestationManifest(readTestdata(t, "cosign-attestation-manifest.json"), defaultLimits())
	if err != nil || len(layers) != 1 {
		t.Fatalf("%+v, %v", layers, err)
	}
	env := readTestdata(t, "cosign-dsse-envelope.json")
	if err := ocimaterial.CheckBlob(layers[0].Digest, layers[0].Size, env); err != nil {
		t.Fatal(err)
	}
	a := ocimaterial.NewAttestation(layers[0], env, "sha256:x", "o")
	if string(a.Envelope) != string(env) || a.Certificate != nil || a.RekorBundle != nil || a.Attached != "sha256:x" {
		t.Fatalf("attestation %+v", a)
	}
	var e dsseEnvelope
	if err := json.Unmarshal(a.Envelope, &e); err != nil {
		t.Fatal(err)
	}
	if stmt := decodeStatement(t, e.Payload); stmt.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Fatalf("predicate type %q", stmt.PredicateType)
	}
}

func TestParseReferrers(t *testing.T) {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	entry := func(digest, artifactType string, extra ...string) string {
		s := `{"mediaType":"` + ocimaterial.MediaTypeOCIManifest + `","size":100,"digest":"` + digest + `"`
		if artifactType != "" {
			s += `,"artifactType":"` + artifactType + `"`
		}
		return s + strings.Join(extra, "") + `}`
	}
	index := func(entries ...string) string {
		return `{"schemaVersion":2,"mediaType":"` + ocimaterial.MediaTypeOCIIndex + `","manifests":[` + strings.Join(entries, ",") + `]}`
	}
	tests := []struct {
		name      string
		body      string
		limits    ocimaterial.Limits
		want      []string // candidate digests
		wantErr   bool
		wantLimit bool
	}{
		{name: "bundle", body: index(entry(d("1"), ocimaterial.BundleMediaTypeV03Alt)), want: []string{d("1")}},
		{name: "every bundle version", body: index(entry(d("1"), ocimaterial.BundleMediaTypeV01), entry(d("2"), ocimaterial.BundleMediaTypeV02), entry(d("3"), ocimaterial.BundleMediaTypeV03)),
			want: []string{d("1"), d("2"), d("3")}},
		{name: "empty config type and none are candidates", body: index(entry(d("1"), ocimaterial.MediaTypeEmptyConfig), entry(d("2"), "")),
			want: []string{d("1"), d("2")}},
		{name: "other artifact types dropped", body: index(entry(d("1"), "application/spdx+json"), entry(d("2"), "application/vnd.in-toto+json"), entry(d("3"), ocimaterial.BundleMediaTypeV03Alt)),
			want: []string{d("3")}},
		{name: "index entries dropped", body: index(`{"mediaType":"` + ocimaterial.MediaTypeOCIIndex + `","size":1,"digest":"` + d("1") + `"}`), want: nil},
		{name: "no media type is a candidate", body: index(`{"size":1,"digest":"` + d("1") + `"}`), want: []string{d("1")}},
		{name: "duplicates once", body: index(entry(d("1"), ocimaterial.BundleMediaTypeV03Alt), entry(d("1"), ocimaterial.BundleMediaTypeV03Alt), entry(d("1"), ""), entry(d("1"), ocimaterial.BundleMediaTypeV03Alt)),
			limits: ocimaterial.Limits{Referrers: 1}, want: []string{d("1")}},
		{name: "annotations", body: index(entry(d("1"), "", `,"annotations":{"a":"b"}`)), want: []string{d("1")}},
		{name: "empty", body: index(), want: nil},
		{name: "no manifests", body: `{"schemaVersion":2}`, want: nil},
		{name: "no media type", body: `{"schemaVersion":2,"manifests":[]}`, want: nil},
		{name: "at the limit", body: index(entry(d("1"), ""), entry(d("2"), "")), limits: ocimaterial.Limits{Referrers: 2}, want: []string{d("1"), d("2")}},
		{name: "over the limit: the first are kept", body: index(entry(d("1"), ""), entry(d("2"), ""), entry(d("3"), "")), limits: ocimaterial.Limits{Referrers: 2}, want: []string{d("1"), d("2")}},
		{name: "others do not count", body: index(entry(d("1"), "x/y"), entry(d("2"), "x/y"), entry(d("3"), "")), limits: ocimaterial.Limits{Referrers: 1}, want: []string{d("3")}},
		{name: "candidate larger than a manifest may be: skipped", body: index(entry(d("1"), ""), `{"size":1,"digest":"`+d("2")+`"}`), limits: ocimaterial.Limits{ManifestBytes: 99}, want: []string{d("2")}},
		{name: "large non-candidate", body: index(entry(d("1"), "x/y")), limits: ocimaterial.Limits{ManifestBytes: 99}, want: nil},
		{name: "manifest media type", body: `{"schemaVersion":2,"mediaType":"` + ocimaterial.MediaTypeOCIManifest + `","manifests":[]}`, wantErr: true},
		{name: "docker list media type", body: `{"schemaVersion":2,"mediaType":"` + ocimaterial.MediaTypeDockerList + `","manifests":[]}`, wantErr: true},
		{name: "layers", body: `{"schemaVersion":2,"manifests":[],"layers":[]}`, wantErr: true},
		{name: "schema 1", body: `{"schemaVersion":1,"manifests":[]}`, wantErr: true},
		{name: "no schema", body: `{"manifests":[]}`, wantErr: true},
		{name: "bad digest: skipped", body: index(entry("sha256:1", ""), entry(d("2"), "")), want: []string{d("2")}},
		{name: "no size: skipped", body: index(`{"digest":"` + d("1") + `"}`), want: nil},
		{name: "negative size: skipped", body: index(`{"size":-1,"digest":"` + d("1") + `"}`), want: nil},
		{name: "artifact type not a string: skipped", body: index(`{"size":1,"digest":"` + d("1") + `","artifactType":1}`), want: nil},
		{name: "annotation not a string: skipped", body: index(entry(d("1"), "", `,"annotations":{"a":1}`)), want: nil},
		{name: "entry not an object: skipped", body: index(`"x"`, entry(d("2"), "")), want: []string{d("2")}},
		{name: "duplicate key", body: index(`{"size":1,"digest":"` + d("1") + `","artifactType":"x/y","artifactType":"` + ocimaterial.BundleMediaTypeV03Alt + `"}`), wantErr: true},
		{name: "trailing data", body: index() + "{}", wantErr: true},
		{name: "not an object", body: `[]`, wantErr: true},
		{name: "empty body", body: ``, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim, err := tc.limits.WithDefaults()
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseReferrers([]byte(tc.body), lim)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if errors.Is(err, ErrLimit) != tc.wantLimit {
				t.Fatalf("err = %v, want ErrLimit %v", err, tc.wantLimit)
			}
			var digests []string
			for _, r := range got {
				digests = append(digests, r.Digest.String())
			}
			if strings.Join(digests, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("candidates %v, want %v", digests, tc.want)
			}
		})
	}
}

// dsseEnvelope and statement are what tests read from cosign's output.
type dsseEnvelope struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		Sig string `json:"sig"`
	} `json:"signatures"`
}

type statement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

func (s statement) digest() string {
	if len(s.Subject) != 1 {
		return ""
	}
	return s.Subject[0].Digest["sha256"]
}

func decodeStatement(t testing.TB, payload string) statement {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	var s statement
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("statement: %v\n%s", err, raw)
	}
	return s
}

// verifyDSSE checks an envelope's first signature with an ECDSA public key
// in PEM, over DSSE's pre-authentication encoding, so that a test knows the
// envelope came back byte for byte as cosign signed it.
func verifyDSSE(t testing.TB, pubPEM []byte, e dsseEnvelope) bool {
	t.Helper()
	block, _ := pem.Decode(pubPEM)
	if block == nil {
		t.Fatal("public key is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil || len(e.Signatures) == 0 {
		t.Fatalf("envelope: %v, %d signatures", err, len(e.Signatures))
	}
	sig, err := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(e.PayloadType), e.PayloadType, len(payload), payload)
	sum := sha256.Sum256([]byte(pae))
	return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], sig)
}
