package plugin_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
)

// TestRegressionFetchedFailureBesideUnreachableReferrers (class 5): a
// verified allow verdict is cached for offline use; then the registry
// serves a signature that fails verification while its referrers endpoint
// is unreachable. The failing signature was fetched, so the registry
// answered: the image is denied, and the cached verdict does not override
// it. As a control, the same cached verdict does serve when the registry is
// wholly unreachable. Through NRI's own runtime side and a real registry
// holding cosign's signatures.
func TestRegressionFetchedFailureBesideUnreachableReferrers(t *testing.T) {
	f := loadFixture(t)
	signed, tampered := f.digests["signed"], f.digests["tampered"]
	upstream, _ := url.Parse("http://" + f.reg.Addr)
	var mode atomic.Value // "pass", "attack" or "down"
	mode.Store("pass")
	sigTag := func(d string) string { return strings.Replace(d, ":", "-", 1) + ".sig" }
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := mode.Load().(string)
		hang := func() {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
		switch {
		case m == "down":
			hang()
			return
		case m == "attack" && (strings.Contains(r.URL.Path, "/referrers/") || strings.HasSuffix(r.URL.Path, "/manifests/"+strings.Replace(signed.DigestStr(), ":", "-", 1))):
			hang() // the referrers API and its fallback tag: unreachable
			return
		case m == "attack" && strings.HasSuffix(r.URL.Path, "/manifests/"+sigTag(signed.DigestStr())):
			// The signature tag now holds a signature that fails.
			r.URL.Path = "/v2/app/tampered/manifests/" + sigTag(tampered.DigestStr())
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	host := strings.TrimPrefix(front.URL, "http://")

	pol := filepath.Join(t.TempDir(), "policy.yaml")
	text := fmt.Sprintf("mode: enforce\ndefault: deny\noffline:\n  maxVerdictAge: 1h\nrules:\n  - name: app\n    images: [\"%s/app/**\"]\n    signatures:\n      signedIdentity: any\n      authorities: [{key: %s}]\n",
		host, filepath.Join(f.dir, "release.pub"))
	if err := os.WriteFile(pol, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	offline := cache.NewMemory(0)
	n := startNodeEngine(t, pol, nil, nil, []decision.Option{decision.WithOfflineStore(offline), decision.WithRevalidateAfter(time.Nanosecond)})
	create := func(id string) error {
		_, err := n.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: testPod,
			Container: &api.Container{Id: id, PodSandboxId: testPod.Id, Name: id,
				Image: &api.Image{Name: host + "/app/signed:v1", Digest: signed.DigestStr()}}})
		return err
	}
	if err := create("verified"); err != nil {
		t.Fatalf("signed image with the registry answering: %v", err)
	}
	if offline.Len() != 1 {
		t.Fatalf("the verified verdict was not kept for offline use")
	}
	mode.Store("down")
	if err := create("offline"); err != nil {
		t.Fatalf("control: registry wholly unreachable, the cached verdict should serve: %v\n%s", err, n.logs.String())
	}
	mode.Store("attack")
	err := create("attacked")
	if err == nil {
		t.Fatalf("a fetched, failing signature beside unreachable referrers was overridden by the cached verdict:\n%s", n.logs.String())
	}
	if strings.Contains(err.Error(), "offline") {
		t.Errorf("the denial speaks of offline verdicts, but the registry answered: %v", err)
	}
}
