package plugin_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/internal/testenv"
	"github.com/sealgate/sealgate/plugin/decision"
)

// TestPulledThroughNotTheDigestAlone: a platform manifest decided alone
// and the same manifest pulled through a tag naming its index (CRI-O) are
// two questions with their own answers. Whichever is asked first, with
// verdicts and denials both remembered, each is answered as if asked
// first: a cached answer to one never decides the other. Real registry and
// cosign signatures.
func TestPulledThroughNotTheDigestAlone(t *testing.T) {
	f := loadFixture(t)
	pol := f.writePolicy(t, "enforce")
	a, err := testenv.RandomImage(8)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// app/index: the index unsigned, its platform manifest signed on its
	// own (the rule does not accept that through the index).
	ownSigned := f.digests["app/index"].Context().Digest(ad.String())
	// app/signedindex: the index signed, its platform manifest not.
	indexSigned := f.digests["signedindex/child"]
	tests := []struct {
		name           string
		child          name.Digest
		tag            string
		alone, through bool
	}{
		{"platform signed, index not", ownSigned, f.reg.Addr + "/app/index:v1", true, false},
		{"index signed, platform not", indexSigned, f.reg.Addr + "/app/signedindex:v1", false, true},
	}
	for _, tt := range tests {
		for _, throughFirst := range []bool{false, true} {
			engine := newEngine(t, pol, decision.WithDenialMemory(time.Minute))
			alone := decision.Request{Image: tt.tag, Digest: tt.child.DigestStr()}
			through := alone
			through.Tag = tt.tag
			order := []decision.Request{alone, through, alone, through}
			if throughFirst {
				order = []decision.Request{through, alone, through, alone}
			}
			for i, req := range order {
				want := tt.alone
				if req.Tag != "" {
					want = tt.through
				}
				d := engine.Decide(context.Background(), req)
				if d.Allowed != want {
					t.Errorf("%s, through first %v, decision %d (tag %q): allowed %v, want %v (source %s, %v)", tt.name, throughFirst, i, req.Tag, d.Allowed, want, d.Source, d.Reasons)
				}
			}
			if hits, misses := engine.CacheCounts(); hits != 2 || misses != 2 {
				t.Errorf("%s, through first %v: %d decisions from memory, %d asking the registry; want 2 and 2", tt.name, throughFirst, hits, misses)
			}
		}
	}
}
