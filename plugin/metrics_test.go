package plugin_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin"
	"github.com/sealgate/sealgate/plugin/metrics"
)

// TestMetricsThroughNRI: decisions made through NRI's runtime side move
// the counters and the latency histogram scraped over the unix socket, and
// /healthz, /readyz and /status answer.
func TestMetricsThroughNRI(t *testing.T) {
	f := loadFixture(t)
	var connected atomic.Bool
	state := func() metrics.State { return metrics.State{Connected: connected.Load(), TrustGeneration: 3} }
	m := metrics.New("test", state)
	sock := filepath.Join(t.TempDir(), "run", "metrics.sock")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error)
	go func() { served <- metrics.Serve(ctx, sock, m.Handler(state, false)) }()
	t.Cleanup(func() { cancel(); <-served })
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		var resp *http.Response
		var err error
		for range 50 { // the socket appears when Serve has started
			if resp, err = client.Get("http://sealgate" + path); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the runtime connects: %d, want 503", code)
	}

	n := startNode(t, f.writePolicy(t, "enforce"), plugin.WithMetrics(m))
	connected.Store(true)
	signed, unsigned := f.digests["signed"], f.digests["unsigned"]
	for range 2 {
		if err := n.create(t, signed, "v1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.create(t, unsigned, "v1"); err == nil {
		t.Fatal("unsigned image allowed")
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`sealgate_decisions_total{mode="enforce",result="allow",rule="app",source="verified"} 1`,
		`sealgate_decisions_total{mode="enforce",result="allow",rule="app",source="cache"} 1`,
		`sealgate_decisions_total{mode="enforce",result="deny",rule="app",source="verified"} 1`,
		`sealgate_trust_generation 3`,
		`sealgate_build_info{version="test"} 1`,
		`sealgate_runtime_connected 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// startNode's probe, then the three above.
	if !strings.Contains(body, "sealgate_decision_duration_seconds_count 4") {
		t.Errorf("/metrics: the latency histogram did not count 4 decisions:\n%s", grep(body, "sealgate_decision_duration"))
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when connected: %d", code)
	}
	_, status := get("/status")
	var st metrics.State
	if err := json.Unmarshal([]byte(status), &st); err != nil || !st.Connected || st.TrustGeneration != 3 {
		t.Errorf("/status %s: %+v %v", status, st, err)
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
