// Command loaddriver measures sealgate against the floor of the NRI
// protocol: it plays the runtime's side of NRI (containerd's own
// pkg/adaptation) on a temporary socket, starts a plugin binary — a null
// plugin that allows everything (hack/nullplugin), then sealgate — and
// drives CreateContainer (and an untimed RemoveContainer) for distinct
// images held, signed, by a registry on 127.0.0.1: each image once cold,
// then again and again warm. Plugins run interleaved, restarted (so cold
// again) for each repeat. It reports, per plugin: cold and warm p50/p99,
// warm decisions per second, registry requests per cold decision,
// deadline misses, idle and peak RSS, and sealgate's figures beside the
// null plugin's. `make bench` runs it.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sirupsen/logrus"
)

// defaultDeadline is sealgate's own default (plugin.DefaultDeadline).
const defaultDeadline = 1500 * time.Millisecond

type config struct {
	sealgate, null string
	images, rounds int
	repeats        int
	parallel       int
	referrers      string
	scheme         string
	latency        time.Duration
	deadline       time.Duration
	jsonOut        string
	bare           bool
}

// result is one plugin's figures over every repeat of one registry mode.
type result struct {
	Plugin        string  `json:"plugin"`
	Referrers     bool    `json:"referrers"`
	ColdP50Ms     float64 `json:"coldP50Ms"`
	ColdP99Ms     float64 `json:"coldP99Ms"`
	WarmP50Ms     float64 `json:"warmP50Ms"`
	WarmP99Ms     float64 `json:"warmP99Ms"`
	WarmPerSecond float64 `json:"warmPerSecond"`
	RequestsCold  float64 `json:"registryRequestsPerColdDecision"`
	DeadlineMiss  int     `json:"deadlineMisses"`
	Denied        int     `json:"denied"`
	IdleRSSMiB    float64 `json:"idleRSSMiB"`
	PeakRSSMiB    float64 `json:"peakRSSMiB"`
	// PeakAnonMiB is the highest anonymous resident memory sampled: the
	// resident set without the pages of the binary itself.
	PeakAnonMiB float64 `json:"peakAnonRSSMiB"`
	// ChildPeakRSSMiB is the highest resident set of the plugin's child
	// processes (sealgate's verifier process), each at its own peak;
	// PeakTotalMiB the highest sum of the plugin's and its children's
	// resident sets sampled at one moment.
	ChildPeakRSSMiB float64 `json:"childPeakRSSMiB"`
	PeakTotalMiB    float64 `json:"peakTotalRSSMiB"`
	cold, warm      []time.Duration
	perSecond       []float64
	requests        int64
}

func main() {
	var c config
	flag.StringVar(&c.sealgate, "sealgate", "bin/sealgate", "the sealgate binary")
	flag.StringVar(&c.null, "null", "bin/nullplugin", "the null plugin binary (hack/nullplugin)")
	flag.IntVar(&c.images, "images", 40, "distinct images, each decided once cold per repeat")
	flag.IntVar(&c.rounds, "rounds", 100, "warm creations per image per repeat")
	flag.IntVar(&c.repeats, "repeats", 7, "repeats, plugins interleaved, each restarted")
	flag.IntVar(&c.parallel, "parallel", 1, "CreateContainer requests in flight")
	flag.StringVar(&c.referrers, "referrers", "both", "registry with the OCI referrers API: on, off or both")
	flag.StringVar(&c.scheme, "scheme", "bundle", "how images are signed: bundle (key-signed SLSA provenance in a Sigstore bundle) or classic (cosign .sig)")
	flag.DurationVar(&c.latency, "latency", 0, "added before every registry reply (a registry that far away)")
	flag.DurationVar(&c.deadline, "deadline", defaultDeadline, "sealgate's decision deadline (--deadline)")
	flag.StringVar(&c.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&c.bare, "bare", false, "also run sealgate without its decision log and metrics endpoint, to measure what they cost")
	flag.Parse()
	logrus.SetLevel(logrus.WarnLevel) // NRI's runtime side logs every plugin (dis)connection
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "loaddriver: %v\n", err)
		os.Exit(1)
	}
}

func run(c config, out io.Writer) error {
	modes := map[string][]bool{"on": {true}, "off": {false}, "both": {true, false}}[c.referrers]
	if modes == nil || c.images < 1 || c.repeats < 1 || c.parallel < 1 || c.rounds < 0 {
		return fmt.Errorf("bad flags: --referrers on|off|both, --images, --repeats, --parallel at least 1, --rounds at least 0")
	}
	for _, bin := range []string{c.sealgate, c.null} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%v (make bench builds bin/sealgate and bin/nullplugin)", err)
		}
	}
	fmt.Fprintf(out, "loaddriver: %d images (%s), %d warm rounds, %d repeats, parallel %d, registry latency %s, sealgate deadline %s\n",
		c.images, c.scheme, c.rounds, c.repeats, c.parallel, c.latency, c.deadline)
	var all []*result
	for _, referrers := range modes {
		res, err := runMode(c, referrers)
		if err != nil {
			return err
		}
		all = append(all, res...)
	}
	report(out, all)
	if c.jsonOut != "" {
		b, err := json.MarshalIndent(all, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(c.jsonOut, append(b, '\n'), 0o644)
	}
	return nil
}

// runMode runs every repeat against one registry.
func runMode(c config, referrers bool) ([]*result, error) {
	dir, err := os.MkdirTemp("", "sg-load-fixture-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	f, err := newFixture(dir, c.images, referrers, c.scheme)
	if err != nil {
		return nil, err
	}
	defer f.reg.Close()
	f.reg.SetLatency(c.latency)
	null := &result{Plugin: "null", Referrers: referrers}
	sg := &result{Plugin: "sealgate", Referrers: referrers}
	sealgate := func(extra ...string) func(sock, d string) []string {
		return func(sock, d string) []string {
			return append([]string{c.sealgate, "run", "--insecure-no-tpm", "--policy", f.policy, "--nri-socket", sock,
				"--containerd-address", "", "--gate-socket", d + "/gate.sock", "--state-dir", d + "/state",
				"--bundle-store", "", "--registry-hosts-dir", d + "/certs.d", "--deadline", c.deadline.String(), "--log-level", "warn"}, extra...)
		}
	}
	type plugin struct {
		res  *result
		argv func(sock, dir string) []string
	}
	plugins := []plugin{
		{null, func(sock, _ string) []string { return []string{c.null, "--nri-socket", sock} }},
		{sg, sealgate()},
	}
	if c.bare {
		// sealgate without the decision log and the metrics endpoint:
		// what those two cost, measured in the same run.
		plugins = append(plugins, plugin{&result{Plugin: "sg-bare", Referrers: referrers}, sealgate("--decision-log", "none", "--metrics-address", "none")})
	}
	for rep := range c.repeats {
		for k := range plugins {
			i := (k + rep) % len(plugins) // interleaved, each first in turn
			if err := measure(c, f, plugins[i].res, plugins[i].argv); err != nil {
				return nil, fmt.Errorf("%s, repeat %d: %w", plugins[i].res.Plugin, rep+1, err)
			}
		}
	}
	out := make([]*result, len(plugins))
	for i, p := range plugins {
		p.res.finish(c)
		out[i] = p.res
	}
	return out, nil
}

// measure runs one repeat of one plugin: idle, cold, warm.
func measure(c config, f *fixture, r *result, argv func(sock, dir string) []string) error {
	s, err := startSession(argv)
	if err != nil {
		return err
	}
	defer s.close()
	time.Sleep(200 * time.Millisecond)
	idle, _, err := s.rss()
	if err != nil {
		return err
	}
	r.IdleRSSMiB = max(r.IdleRSSMiB, float64(idle)/(1<<20))
	stop := make(chan struct{})
	samples := s.sample(stop)
	defer func() {
		close(stop)
		p := <-samples
		r.PeakAnonMiB = max(r.PeakAnonMiB, float64(p.anon)/(1<<20))
		r.ChildPeakRSSMiB = max(r.ChildPeakRSSMiB, float64(p.child)/(1<<20))
		r.PeakTotalMiB = max(r.PeakTotalMiB, float64(p.total)/(1<<20))
	}()
	before := f.reg.Requests()
	cold, denied, missed := s.createAll(f.images, c.parallel)
	r.requests += f.reg.Requests() - before
	r.cold = append(r.cold, cold...)
	r.Denied += denied
	r.DeadlineMiss += missed
	if c.rounds > 0 {
		warmSet := make([]name.Digest, 0, len(f.images)*c.rounds)
		for range c.rounds {
			warmSet = append(warmSet, f.images...)
		}
		start := time.Now()
		warm, denied, missed := s.createAll(warmSet, c.parallel)
		r.perSecond = append(r.perSecond, float64(len(warmSet))/time.Since(start).Seconds())
		r.warm = append(r.warm, warm...)
		r.Denied += denied
		r.DeadlineMiss += missed
	}
	_, peak, err := s.rss()
	if err != nil {
		return err
	}
	r.PeakRSSMiB = max(r.PeakRSSMiB, float64(peak)/(1<<20))
	return nil
}

func (r *result) finish(c config) {
	r.ColdP50Ms, r.ColdP99Ms = pct(r.cold, 0.50), pct(r.cold, 0.99)
	r.WarmP50Ms, r.WarmP99Ms = pct(r.warm, 0.50), pct(r.warm, 0.99)
	if len(r.perSecond) > 0 {
		slices.Sort(r.perSecond)
		r.WarmPerSecond = r.perSecond[len(r.perSecond)/2]
	}
	r.RequestsCold = float64(r.requests) / float64(c.images*c.repeats)
}

// pct is the p-th percentile in milliseconds.
func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[int(float64(len(s)-1)*p)]) / float64(time.Millisecond)
}

func report(w io.Writer, all []*result) {
	fmt.Fprintf(w, "\n%-9s %-9s %9s %9s %9s %9s %10s %9s %8s %7s %9s %9s %9s %9s %9s\n", "plugin", "referrers", "cold p50", "cold p99", "warm p50", "warm p99", "warm/s", "req/cold", "deadline", "denied",
		"idle RSS", "peak RSS", "peak anon", "child pk", "total pk")
	for _, r := range all {
		fmt.Fprintf(w, "%-9s %-9v %7.3fms %7.3fms %7.3fms %7.3fms %10.0f %9.2f %8d %7d %6.1fMiB %6.1fMiB %6.1fMiB %6.1fMiB %6.1fMiB\n", r.Plugin, r.Referrers,
			r.ColdP50Ms, r.ColdP99Ms, r.WarmP50Ms, r.WarmP99Ms, r.WarmPerSecond, r.RequestsCold, r.DeadlineMiss, r.Denied, r.IdleRSSMiB, r.PeakRSSMiB, r.PeakAnonMiB,
			r.ChildPeakRSSMiB, r.PeakTotalMiB)
	}
	var b strings.Builder
	byPlugin := func(referrers bool, name string) *result {
		for _, r := range all {
			if r.Referrers == referrers && r.Plugin == name {
				return r
			}
		}
		return nil
	}
	for _, referrers := range []bool{true, false} {
		null, sg, bare := byPlugin(referrers, "null"), byPlugin(referrers, "sealgate"), byPlugin(referrers, "sg-bare")
		if null != nil && sg != nil && null.WarmPerSecond > 0 {
			fmt.Fprintf(&b, "referrers %v: sealgate warm throughput %.0f%% of the null plugin's, warm p50 %+.3f ms beside it, peak RSS %.1f MiB (null %.1f MiB)\n",
				sg.Referrers, 100*sg.WarmPerSecond/null.WarmPerSecond, sg.WarmP50Ms-null.WarmP50Ms, sg.PeakRSSMiB, null.PeakRSSMiB)
		}
		if bare != nil && sg != nil && bare.WarmPerSecond > 0 {
			fmt.Fprintf(&b, "referrers %v: the decision log and metrics cost %.1f%% of sealgate's warm throughput (%.0f/s with, %.0f/s without), warm p50 %+.3f ms\n",
				referrers, 100*(1-sg.WarmPerSecond/bare.WarmPerSecond), sg.WarmPerSecond, bare.WarmPerSecond, sg.WarmP50Ms-bare.WarmP50Ms)
		}
	}
	fmt.Fprint(w, "\n"+b.String())
}
