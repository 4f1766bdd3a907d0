package plugin_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
	"github.com/sealgate/sealgate/plugin/source"
)

// TestRequestsPerColdDecision counts what a cold decision asks of the
// registry on 127.0.0.1, for keyless signatures in cosign's classic scheme
// and as Sigstore bundle referrers, on registries with and without the
// referrers API: one source, as the daemon keeps it, so that only the
// first decision per host pings the registry.
func TestRequestsPerColdDecision(t *testing.T) {
	f := loadKeylessFixture(t)
	pol, err := policy.Load(f.writePolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.NewRegistry(source.WithHostsDir(filepath.Join(t.TempDir(), "certs.d")))
	if err != nil {
		t.Fatal(err)
	}
	decide := func(d string) (int64, []string, decision.Decision) {
		t.Helper()
		dig := f.digests[d]
		reg := f.regs[registryOf(f, dig)]
		// A fresh engine: nothing cached, the source kept.
		e := engineOver(t, pol, src, decision.WithDenialMemory(0))
		before := reg.Requests()
		got := e.Decide(context.Background(), decision.Request{Image: dig.Context().String() + ":v1", Digest: dig.DigestStr(), Namespace: "default"})
		return reg.Requests() - before, reg.RequestsSince(before), got
	}
	for _, kind := range registryKinds {
		// The first decision on a host pings it and learns whether it
		// serves the referrers API.
		if n, log, _ := decide(kind + "/classic/missing-sct"); n > 6 {
			t.Errorf("%s: first decision on the host: %d requests: %q", kind, n, log)
		}
		for _, form := range keylessForms {
			n, log, got := decide(kind + "/" + form + "/right")
			t.Logf("%s/%s: %d requests: %q", kind, form, n, log)
			if !got.Allowed {
				t.Fatalf("%s/%s denied: %v", kind, form, got.Err())
			}
			if n > 3 {
				t.Errorf("%s/%s: %d requests for a cold decision, want at most 3: %q", kind, form, n, log)
			}
			for _, r := range log {
				if r == "GET /v2/" {
					t.Errorf("%s/%s: the registry was pinged again: %q", kind, form, log)
				}
			}
		}
	}
}

// TestRequestsDecidedAgain: an image decided again without a verdict (a
// denial past its memory, a re-seal, an evicted verdict) asks the registry
// only for its listings (the referrers and cosign's tags), each revalidated
// with If-None-Match and answered 304 by the registry; nothing fetched by
// digest is asked again. The decision is made afresh from the kept
// material, with the same outcome.
func TestRequestsDecidedAgain(t *testing.T) {
	f := loadKeylessFixture(t)
	pol, err := policy.Load(f.writePolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.NewRegistry(source.WithHostsDir(filepath.Join(t.TempDir(), "certs.d")))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range registryKinds {
		for _, form := range keylessForms {
			for _, c := range []struct {
				image string
				allow bool
			}{{"right", true}, {"missing-sct", false}} {
				d := kind + "/" + form + "/" + c.image
				dig := f.digests[d]
				reg := f.regs[registryOf(f, dig)]
				var first []string
				for round := range 2 {
					// A fresh engine: no verdict, nothing learned.
					e := engineOver(t, pol, src, decision.WithDenialMemory(0))
					before, before304 := reg.Requests(), reg.NotModified()
					got := e.Decide(context.Background(), decision.Request{Image: dig.Context().String() + ":v1", Digest: dig.DigestStr(), Namespace: "default"})
					if got.Allowed != c.allow {
						t.Fatalf("%s, round %d: allowed %v, want %v: %v", d, round, got.Allowed, c.allow, got.Err())
					}
					log := reg.RequestsSince(before)
					if round == 0 {
						first = log
						continue
					}
					t.Logf("%s decided again: %q (first: %q)", d, log, first)
					for _, r := range log {
						if !strings.Contains(r, "/referrers/") && !strings.Contains(r, "/manifests/sha256-") {
							t.Errorf("%s decided again asked %s, which is not a listing", d, r)
						}
					}
					if n := reg.NotModified() - before304; n < 1 || len(log) > 2 {
						t.Errorf("%s decided again: %d requests, %d answered 304, want at most 2 listings, revalidated", d, len(log), n)
					}
					if c.allow && form == "bundle" && kind == "referrers" && len(log) != 1 {
						t.Errorf("%s decided again: %d requests, want 1", d, len(log))
					}
				}
			}
		}
	}
}
