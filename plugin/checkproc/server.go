package checkproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sealgate/sealgate/plugin/decision"
	"github.com/sealgate/sealgate/plugin/policy"
)

// Builder makes the checker the verifier runs, from what the daemon sent
// and the policy parsed from it; observe is to be told of every registry
// request.
type Builder func(in Init, p *policy.Policy, observe Observer) (decision.Checker, error)

// Serve is the verifier: it reads Init from r, builds the checker with
// build, says it is ready on w, then answers checks until r ends (the
// daemon closed it, or died). A failed start is reported to the daemon
// and returned.
func Serve(ctx context.Context, r io.Reader, w io.Writer, build Builder) error {
	in := bufio.NewReader(r)
	var wmu sync.Mutex
	send := func(m *message) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = writeFrame(w, m) // the daemon gone: r ends next
	}
	m, err := readFrame(in)
	if err != nil {
		return fmt.Errorf("read init: %w", err)
	}
	if m.Type != typeInit || m.Init == nil {
		return fmt.Errorf("first frame %q, want init", m.Type)
	}
	pol, err := m.Init.ParsePolicy()
	var c decision.Checker
	if err == nil {
		c, err = build(*m.Init, pol, func(host string, took time.Duration, err error) {
			o := &observation{Host: host, Took: took}
			if err != nil {
				o.Err = err.Error()
			}
			send(&message{Type: typeObserve, Observe: o})
		})
	}
	if err != nil {
		send(&message{Type: typeReady, Result: &result{ErrKind: kindFailed, Err: err.Error()}})
		return err
	}
	send(&message{Type: typeReady})
	rules := make(map[string]*policy.Rule, len(pol.Rules))
	for _, r := range pol.Rules {
		rules[r.Name] = r
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		m, err := readFrame(in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(&message{ID: m.ID, Type: typeResult, Result: answer(ctx, c, rules, m)})
		}()
	}
}

// answer runs one request.
func answer(ctx context.Context, c decision.Checker, rules map[string]*policy.Rule, m *message) *result {
	switch {
	case m.Type == typeCheck && m.Check != nil:
		rule, ok := rules[m.Check.Rule]
		if !ok {
			return &result{ErrKind: kindFailed, Err: fmt.Sprintf("the verifier's policy has no rule %q", m.Check.Rule)}
		}
		ctx, cancel := bounded(ctx, m.Check.Within)
		defer cancel()
		out := c.Check(ctx, decision.Check{Image: m.Check.Image, Tag: m.Check.Tag, Rule: rule})
		r := &result{Verdict: &out.Verdict}
		if out.Err != nil {
			r.ErrKind, r.Err = kind(out.Err), out.Err.Error()
		}
		return r
	case m.Type == typePick && m.Pick != nil:
		ctx, cancel := bounded(ctx, m.Pick.Within)
		defer cancel()
		d, err := c.PickPulled(ctx, m.Pick.Tag, m.Pick.Candidates)
		if err != nil {
			return &result{ErrKind: kind(err), Err: err.Error()}
		}
		return &result{Digest: d}
	}
	return &result{ErrKind: kindFailed, Err: fmt.Sprintf("unknown request %q", m.Type)}
}

// bounded is ctx with the daemon's time limit, whose expiry is the
// daemon's fetch budget running out.
func bounded(ctx context.Context, within time.Duration) (context.Context, context.CancelFunc) {
	if within <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, within, decision.ErrFetchTimeout)
}

func kind(err error) string {
	switch {
	case errors.Is(err, decision.ErrUnreachable):
		return kindUnreachable
	case errors.Is(err, decision.ErrFetchTimeout):
		return kindTimeout
	}
	return kindFailed
}
