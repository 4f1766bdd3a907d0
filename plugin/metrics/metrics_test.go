package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/plugin/decision"
)

// TestMetricsScrape: what is observed and what the state says appear in
// the scrape, under their names and labels.
func TestMetricsScrape(t *testing.T) {
	st := State{Connected: true, Sealed: true, TrustGeneration: 4, CacheHits: 7, CacheMisses: 2, GateChecks: 5, GateRefusals: 1, Unverified: 3, CachedVerdicts: 9,
		TPMOperations: map[string]TPMCount{"unseal": {Total: 2}, "open": {Total: 3, Errors: 1}}, CacheRejected: map[string]int{"bad-mac": 4}}
	m := New("v1", func() State { return st })
	m.ObserveDecision(decision.Decision{Allowed: true, Mode: "enforce", Source: "cache", Rule: "app"}, 300*time.Microsecond)
	m.ObserveDecision(decision.Decision{Allowed: true, WouldDeny: true, Mode: "warn", Source: "verified", Rule: "app"}, 2*time.Millisecond)
	m.ObserveRequest("r.example", 20*time.Millisecond, nil)
	m.ObserveRequest("r.example", time.Second, errors.New("no reply"))
	rec := httptest.NewRecorder()
	m.Handler(func() State { return st }, true).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`sealgate_decisions_total{mode="enforce",result="allow",rule="app",source="cache"} 1`,
		`sealgate_decisions_total{mode="warn",result="would-deny",rule="app",source="verified"} 1`,
		`sealgate_decision_duration_seconds_count 2`,
		`sealgate_registry_request_duration_seconds_count{host="r.example"} 2`,
		`sealgate_registry_request_errors_total{host="r.example"} 1`,
		`sealgate_cache_hits_total 7`, `sealgate_cache_misses_total 2`,
		`sealgate_tpm_operations_total{op="unseal"} 2`, `sealgate_tpm_operations_total{op="open"} 3`, `sealgate_tpm_errors_total{op="open"} 1`,
		`sealgate_cache_rejected_records{reason="bad-mac"} 4`,
		`sealgate_runtime_gate_checks_total 5`, `sealgate_runtime_gate_refusals_total 1`,
		`sealgate_trust_generation 4`, `sealgate_trust_sealed 1`, `sealgate_cached_verdicts 9`,
		`sealgate_unverified_running_containers 3`, `sealgate_build_info{version="v1"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	for path, code := range map[string]int{"/healthz": 200, "/readyz": 200} {
		rec := httptest.NewRecorder()
		m.Handler(func() State { return st }, true).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != code {
			t.Errorf("%s: %d", path, rec.Code)
		}
	}
	st.Sealed = false
	rec = httptest.NewRecorder()
	m.Handler(func() State { return st }, true).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "sealed") {
		t.Errorf("/readyz without a sealed trust store: %d %s", rec.Code, rec.Body.String())
	}
}
