package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/plugin/ocimaterial"
	"github.com/sealgate/sealgate/plugin/source/sourcetest"
)

func TestAttestationsFound(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "team/app")
	want := []sourcetest.Att{
		{Envelope: sourcetest.Envelope(1), Ann: map[string]string{
			ocimaterial.AnnotationSignature:   "",
			ocimaterial.AnnotationCertificate: "CERT",
			ocimaterial.AnnotationChain:       "CHAIN",
			ocimaterial.AnnotationBundle:      `{"SignedEntryTimestamp":"AAAA"}`,
			ocimaterial.AnnotationTimestamp:   `{"SignedRFC3161Timestamp":"MEUC"}`,
			"predicateType":                   "https://slsa.dev/provenance/v1",
		}},
		{Envelope: sourcetest.Envelope(2)},
	}
	sourcetest.PushAttestations(t, reg.Host, image, want...)
	// Signatures of the same image are not attestations, nor the reverse.
	sourcetest.PushSignatures(t, reg.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("s")})

	src := newTestSource(t)
	got, err := src.Attestations(context.Background(), image)
	if err != nil {
		t.Fatalf("Attestations: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d attestations, want %d", len(got), len(want))
	}
	tag, _ := AttestationTag(image)
	for i, w := range want {
		g := got[i]
		if !bytes.Equal(g.Envelope, w.Envelope) {
			t.Errorf("att %d envelope = %s, want %s", i, g.Envelope, w.Envelope)
		}
		if string(g.Certificate) != w.Ann[ocimaterial.AnnotationCertificate] || string(g.Chain) != w.Ann[ocimaterial.AnnotationChain] ||
			string(g.RekorBundle) != w.Ann[ocimaterial.AnnotationBundle] || string(g.Timestamp) != w.Ann[ocimaterial.AnnotationTimestamp] {
			t.Errorf("att %d annotations: %q %q %q %q", i, g.Certificate, g.Chain, g.RekorBundle, g.Timestamp)
		}
		if g.Attached != image.DigestStr() || g.Origin != fmt.Sprintf("%s layer %d", tag, i) {
			t.Errorf("att %d attached %q origin %q", i, g.Attached, g.Origin)
		}
	}
	sigs, err := src.Signatures(context.Background(), image)
	if err != nil || len(sigs) != 1 || string(sigs[0].Signature) != "s" {
		t.Fatalf("Signatures beside attestations: %+v, %v", sigs, err)
	}

	// The caller owns the bytes.
	got[0].Envelope[0] = 'X'
	again, err := src.Attestations(context.Background(), image)
	if err != nil || again[0].Envelope[0] != '{' {
		t.Fatalf("a later call saw the caller's change: %v", err)
	}
}

func TestAttestationsNone(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	sourcetest.PushSignatures(t, reg.Host, image, sourcetest.Sig{Payload: sourcetest.SimpleSigning(image), Signature: []byte("s")})
	got, err := newTestSource(t).Attestations(context.Background(), image)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("got %#v, %v; want an empty non-nil slice", got, err)
	}
}

func TestAttestationsErrors(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	image := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	sourcetest.PushAttestations(t, reg.Host, image, sourcetest.Att{Envelope: sourcetest.Envelope(1)}, sourcetest.Att{Envelope: bytes.Repeat([]byte("e"), 2048)})
	notDSSE := sourcetest.PushImage(t, reg.Host, reg.Host, "app")
	sourcetest.PushAttestations(t, reg.Host, notDSSE, sourcetest.Att{Envelope: sourcetest.SimpleSigning(notDSSE), MediaType: ocimaterial.SimpleSigningMediaType})
	dead, _ := name.NewDigest(sourcetest.DeadHost(t) + "/app@" + image.DigestStr())

	tests := []struct {
		name   string
		image  name.Digest
		limits ocimaterial.Limits
		hook   func(w http.ResponseWriter, r *http.Request) bool
		want   error // nil: any error but ErrUnreachable
	}{
		{name: "registry down", image: dead, want: ErrUnreachable},
		{name: "tag 503", image: image, want: ErrUnreachable, hook: func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, ".att") {
				http.Error(w, "no", http.StatusServiceUnavailable)
				return true
			}
			return false
		}},
		{name: "envelope does not match its digest", image: image, hook: func(w http.ResponseWriter, r *http.Request) bool {
			if strings.Contains(r.URL.Path, "/blobs/") {
				w.Write(sourcetest.Envelope(9))
				return true
			}
			return false
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg.SetHook(tc.hook)
			defer reg.SetHook(nil)
			got, err := newTestSource(t, WithLimits(tc.limits)).Attestations(context.Background(), tc.image)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %+v, %v; want %v", got, err, tc.want)
			}
			if tc.want == nil && (err == nil || errors.Is(err, ErrUnreachable)) {
				t.Fatalf("got %+v, %v; want a failure that is not ErrUnreachable", got, err)
			}
		})
	}
	// A layer that is not DSSE is skipped.
	if got, err := newTestSource(t).Attestations(context.Background(), notDSSE); err != nil || len(got) != 0 {
		t.Errorf("a layer that is not DSSE: %d attestations, %v; want none and no error", len(got), err)
	}
	// Junk is skipped, not fatal: an envelope over the limit, layers past
	// the count limit. What is left is returned.
	for _, lim := range []ocimaterial.Limits{{EnvelopeBytes: 1024}, {Signatures: 1}} {
		got, err := newTestSource(t, WithLimits(lim)).Attestations(context.Background(), image)
		if err != nil || len(got) != 1 {
			t.Errorf("limits %+v: %d attestations, %v; want the one within them", lim, len(got), err)
		}
	}
	// The payload limit (signatures) does not bound envelopes.
	got, err := newTestSource(t, WithLimits(ocimaterial.Limits{PayloadBytes: 1024})).Attestations(context.Background(), image)
	if err != nil || len(got) != 2 {
		t.Fatalf("within limits: %d attestations, %v", len(got), err)
	}
}
