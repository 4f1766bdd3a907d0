// Package metrics holds sealgate's Prometheus metrics and serves them,
// with health and readiness, over HTTP on a unix socket (or TCP when the
// operator asks).
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/runtimegate"
)

// Metrics are the counters and histograms sealgate updates as it decides.
// Updating them allocates nothing once a label set has been seen.
type Metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	latency   prometheus.Histogram
	requests  *prometheus.HistogramVec
	reqErrors *prometheus.CounterVec
}

// State is what the process reports about itself at the moment of a
// scrape or a status request; the composition root supplies it.
type State struct {
	// Connected: the runtime's NRI connection is up.
	Connected bool `json:"connected"`
	// Sealed: the policy in force comes from a trust store checked
	// against the TPM.
	Sealed          bool   `json:"sealed"`
	TrustGeneration uint64 `json:"trustGeneration"`
	TrustDigest     string `json:"trustDigest,omitempty"`
	ReloadsAccepted int64  `json:"reloadsAccepted"`
	ReloadsRefused  int64  `json:"reloadsRefused"`
	CachedVerdicts  int    `json:"cachedVerdicts"`
	// Unverified are running containers whose images the policy in force
	// would deny.
	Unverified int64 `json:"unverifiedRunning"`
	// UnverifiedContainers names them, by pod and container, as the last
	// audit (at connection, or after a trust change) found them.
	UnverifiedContainers []runtimegate.Running `json:"unverifiedContainers,omitempty"`
	// GateChecks and GateRefusals count the runtime gate's checks.
	GateChecks   int64 `json:"runtimeGateChecks"`
	GateRefusals int64 `json:"runtimeGateRefusals"`
	// CacheHits and CacheMisses count decisions a cached verdict (or a
	// remembered denial) made, and those that asked the sources, since the
	// trust generation in force was taken.
	CacheHits   int64 `json:"cacheHits"`
	CacheMisses int64 `json:"cacheMisses"`
	// CacheRejected counts the persisted verdict records the last load
	// of the verdict store left out, by reason (bad-mac, old-generation,
	// newer-generation, malformed).
	CacheRejected map[string]int `json:"cacheRejected,omitempty"`
	// TPMOperations counts the TPM operations since start, by operation.
	TPMOperations map[string]TPMCount `json:"tpmOperations,omitempty"`
}

// TPMCount is how many times one TPM operation ran, and failed.
type TPMCount struct {
	Total  int64 `json:"total"`
	Errors int64 `json:"errors"`
}

// stateCollector reports the labelled values of State at each scrape.
type stateCollector struct {
	state                  func() State
	tpmOps, tpmErrs, rejct *prometheus.Desc
}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tpmOps
	ch <- c.tpmErrs
	ch <- c.rejct
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.state()
	for op, n := range s.TPMOperations {
		ch <- prometheus.MustNewConstMetric(c.tpmOps, prometheus.CounterValue, float64(n.Total), op)
		ch <- prometheus.MustNewConstMetric(c.tpmErrs, prometheus.CounterValue, float64(n.Errors), op)
	}
	for reason, n := range s.CacheRejected {
		ch <- prometheus.MustNewConstMetric(c.rejct, prometheus.GaugeValue, float64(n), reason)
	}
}

// New registers the metrics; state is asked at every scrape.
func New(version string, state func() State) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_decisions_total",
			Help: "Decisions on containers, by result (allow, deny, would-deny), mode, source (verified, cache, offline-cache, policy) and rule."},
			[]string{"result", "mode", "source", "rule"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sealgate_decision_duration_seconds",
			Help:    "Time to decide on a container, from the runtime's request to the answer.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2}}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sealgate_registry_request_duration_seconds",
			Help:    "Time until a registry host's reply (or failure), by host.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}}, []string{"host"}),
		reqErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_registry_request_errors_total",
			Help: "Registry requests that got no reply (unreachable, timed out), by host."}, []string{"host"}),
	}
	gauge := func(name, help string, f func(State) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(state()) })
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	counter := func(name, help string, f func(State) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(state()) })
	}
	reg.MustRegister(m.decisions, m.latency, m.requests, m.reqErrors,
		counter("sealgate_cache_hits_total", "Decisions a cached verdict or a remembered denial made, since the trust generation in force.", func(s State) float64 { return float64(s.CacheHits) }),
		counter("sealgate_cache_misses_total", "Decisions that asked the signature sources, since the trust generation in force.", func(s State) float64 { return float64(s.CacheMisses) }),
		counter("sealgate_runtime_gate_checks_total", "Containers and sandboxes the runtime gate (sealgate-runc) checked.", func(s State) float64 { return float64(s.GateChecks) }),
		counter("sealgate_runtime_gate_refusals_total", "Of those, the ones it refused.", func(s State) float64 { return float64(s.GateRefusals) }),
		gauge("sealgate_runtime_connected", "1 while the runtime's NRI connection is up.", func(s State) float64 { return b2f(s.Connected) }),
		gauge("sealgate_trust_sealed", "1 when the policy in force comes from a trust store checked against the TPM.", func(s State) float64 { return b2f(s.Sealed) }),
		gauge("sealgate_trust_generation", "The trust generation in force.", func(s State) float64 { return float64(s.TrustGeneration) }),
		gauge("sealgate_trust_reloads_accepted", "Re-seals taken live since start.", func(s State) float64 { return float64(s.ReloadsAccepted) }),
		gauge("sealgate_trust_reloads_refused", "Trust store changes refused since start (not sealed).", func(s State) float64 { return float64(s.ReloadsRefused) }),
		gauge("sealgate_cached_verdicts", "Verdicts held in memory.", func(s State) float64 { return float64(s.CachedVerdicts) }),
		gauge("sealgate_unverified_running_containers", "Running containers whose images the policy in force would deny.", func(s State) float64 { return float64(s.Unverified) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealgate_build_info", Help: "Always 1; the version is a label.", ConstLabels: prometheus.Labels{"version": version}}, func() float64 { return 1 }),
		stateCollector{state: state,
			tpmOps:  prometheus.NewDesc("sealgate_tpm_operations_total", "TPM operations since start, by operation (open, unseal, read_counter, read_clock, read_pcr, extend_pcr, ...).", []string{"op"}, nil),
			tpmErrs: prometheus.NewDesc("sealgate_tpm_errors_total", "Of those, the ones that failed.", []string{"op"}, nil),
			rejct:   prometheus.NewDesc("sealgate_cache_rejected_records", "Persisted verdict records the last load of the verdict store left out, by reason.", []string{"reason"}, nil)},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// ObserveDecision counts d and how long it took.
func (m *Metrics) ObserveDecision(d decision.Decision, took time.Duration) {
	result := "allow"
	switch {
	case !d.Allowed:
		result = "deny"
	case d.WouldDeny:
		result = "would-deny"
	}
	m.decisions.WithLabelValues(result, d.Mode, d.Source, d.Rule).Inc()
	m.latency.Observe(took.Seconds())
}

// ObserveRequest counts one registry request.
func (m *Metrics) ObserveRequest(host string, took time.Duration, err error) {
	m.requests.WithLabelValues(host).Observe(took.Seconds())
	if err != nil {
		m.reqErrors.WithLabelValues(host).Inc()
	}
}

// Handler serves /metrics, /healthz (the process answers), /readyz
// (connected to the runtime with a sealed trust store; unless
// requireSealed is false, for nodes run without a TPM) and /status (State
// as JSON).
func (m *Metrics) Handler(state func() State, requireSealed bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		s := state()
		switch {
		case !s.Connected:
			http.Error(w, "not connected to the runtime", http.StatusServiceUnavailable)
		case requireSealed && !s.Sealed:
			http.Error(w, "the policy in force is not from a sealed trust store", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(state())
	})
	return mux
}

// Serve serves h on addr until ctx ends: a unix socket path (made
// root-only, replacing a stale socket), or "tcp:HOST:PORT".
func Serve(ctx context.Context, addr string, h http.Handler) error {
	var ln net.Listener
	var err error
	if tcp, ok := cutPrefix(addr, "tcp:"); ok {
		ln, err = net.Listen("tcp", tcp)
	} else {
		if err := os.MkdirAll(filepath.Dir(addr), 0o700); err != nil {
			return fmt.Errorf("metrics socket: %w", err)
		}
		_ = os.Remove(addr)
		ln, err = net.Listen("unix", addr)
		if err == nil {
			err = os.Chmod(addr, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("metrics endpoint %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}
