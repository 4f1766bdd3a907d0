package source

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sealgate/sealgate/plugin/source/sourcetest"
)

// rotatingKeychain answers the password it holds now, and remembers
// what it was asked about.
type rotatingKeychain struct {
	password atomic.Pointer[string]
	asked    sync.Map
}

func (k *rotatingKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	k.asked.Store(r.String(), true)
	return &authn.Basic{Username: "u", Password: *k.password.Load()}, nil
}

// TestPullerKeptPerHost: the puller of a host is kept across calls and
// repositories (the registry's root is asked once), and made anew when the
// credentials change, so that a rotated password is used at once.
func TestPullerKeptPerHost(t *testing.T) {
	reg := sourcetest.NewRegistry(t)
	var want atomic.Pointer[string]
	p1, p2 := "one", "two"
	want.Store(&p1)
	a := sourcetest.PushImage(t, reg.Host, reg.Host, "team/a")
	b := sourcetest.PushImage(t, reg.Host, reg.Host, "team/b")
	key := sourcetest.NewKey(t)
	for _, d := range []name.Digest{a, b} {
		payload := sourcetest.SimpleSigning(d)
		sourcetest.PushSignatures(t, reg.Host, d, sourcetest.Sig{Payload: payload, Signature: sourcetest.SignWithKey(t, key, payload)})
	}
	// From here the registry wants the password of the moment.
	reg.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if _, pw, ok := r.BasicAuth(); !ok || pw != *want.Load() {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return true
		}
		return false
	})
	kc := &rotatingKeychain{}
	kc.password.Store(&p1)
	src := newTestSource(t, WithKeychain(kc))
	pings := func() int {
		n := 0
		for _, r := range reg.Requests() {
			if r == "GET /v2/" {
				n++
			}
		}
		return n
	}
	start := pings()
	for _, d := range []string{a.String(), b.String(), a.String()} {
		sigs, err := src.Signatures(context.Background(), mustDigest(t, d))
		if err != nil || len(sigs) != 1 {
			t.Fatalf("%s: %d signatures, %v", d, len(sigs), err)
		}
	}
	// Asked about the repository, not the registry: credential providers
	// match whole image names.
	if _, ok := kc.asked.Load(reg.Host + "/team/a"); !ok {
		t.Errorf("the keychain was not asked about %s/team/a", reg.Host)
	}
	if n := pings() - start; n != 1 {
		t.Errorf("the registry's root was asked %d times for three calls on two repositories, want 1", n)
	}
	// The password is rotated at the registry and in the credentials.
	want.Store(&p2)
	kc.password.Store(&p2)
	if sigs, err := src.Signatures(context.Background(), mustDigest(t, b.String())); err != nil || len(sigs) != 1 {
		t.Fatalf("after the rotation: %d signatures, %v", len(sigs), err)
	}
	// Wrong credentials fail; they are not masked by a kept puller.
	bad := "three"
	kc.password.Store(&bad)
	if _, err := src.Signatures(context.Background(), mustDigest(t, b.String())); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Errorf("with a wrong password: %v, want an authentication error", err)
	}
}

func mustDigest(t *testing.T, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
