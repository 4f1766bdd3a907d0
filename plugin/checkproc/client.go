package checkproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sealgate/sealgate/plugin/cache"
	"github.com/sealgate/sealgate/plugin/decision"
)

// DefaultIdle is how long the verifier stays up with nothing to check.
const DefaultIdle = 30 * time.Second

// startTimeout bounds the verifier's start: exec, package initialisation,
// the policy parsed and the sources built.
const startTimeout = 10 * time.Second

// ErrVerifier marks a check that failed because the verifier process did:
// it could not start, exited or broke the protocol. The image is denied
// (never allowed from an offline verdict: the sources were not asked) and
// the next check starts a new verifier.
var ErrVerifier = errors.New("verifier process")

// Observer is told about every registry request the verifier makes.
type Observer func(host string, took time.Duration, err error)

// Client is a decision.Checker whose checks run in a verifier process. It
// starts the verifier when a check comes, keeps it while checks come, and
// stops it after DefaultIdle (WithIdle) without one, so that the memory of
// verification is given back between bursts of new images. It is safe for
// concurrent use.
type Client struct {
	argv    []string
	exe     *os.File // the verifier's executable held open, or nil
	init    Init
	idle    time.Duration
	observe Observer
	stderr  io.Writer

	mu     sync.Mutex
	proc   *proc
	closed bool
	nextID uint64
	starts int
}

var _ decision.Checker = (*Client)(nil)

// ClientOption configures a Client.
type ClientOption func(*Client) error

// WithIdle sets how long the verifier stays up with nothing to check.
func WithIdle(d time.Duration) ClientOption {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("verifier idle time %s: must be positive", d)
		}
		c.idle = d
		return nil
	}
}

// WithObserver has every registry request the verifier makes reported to f.
func WithObserver(f Observer) ClientOption {
	return func(c *Client) error {
		if f == nil {
			return errors.New("nil observer")
		}
		c.observe = f
		return nil
	}
}

// WithStderr sends the verifier's standard error to w (default: discarded).
func WithStderr(w io.Writer) ClientOption {
	return func(c *Client) error {
		if w == nil {
			return errors.New("nil stderr")
		}
		c.stderr = w
		return nil
	}
}

// WithExecutable starts the verifier from f, its executable held open,
// rather than from the path argv names: a binary replaced on disk (an
// upgrade, before the daemon restarts) is not what a daemon of the release
// before it starts, since the two speak one release's protocol. f stays
// the caller's to close, after the client.
func WithExecutable(f *os.File) ClientOption {
	return func(c *Client) error {
		if f == nil {
			return errors.New("nil executable")
		}
		c.exe = f
		return nil
	}
}

// NewClient returns a client that runs argv (the verifier's absolute path
// and arguments) and starts it with in.
func NewClient(argv []string, in Init, opts ...ClientOption) (*Client, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("new verifier client: no command")
	}
	c := &Client{argv: argv, init: in, idle: DefaultIdle, stderr: io.Discard}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, fmt.Errorf("new verifier client: %w", err)
		}
	}
	return c, nil
}

// Starts is how many times a verifier was started.
func (c *Client) Starts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.starts
}

// Running reports whether a verifier process is up.
func (c *Client) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc != nil && !c.proc.ended()
}

// Close stops the verifier; checks after it fail.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	p := c.proc
	c.proc = nil
	c.mu.Unlock()
	if p != nil {
		p.stop()
	}
	return nil
}

// Check runs the check in the verifier (decision.Checker).
func (c *Client) Check(ctx context.Context, chk decision.Check) decision.Outcome {
	if chk.Rule == nil {
		return failed(fmt.Errorf("%w: check without a rule", ErrVerifier))
	}
	req := &message{Type: typeCheck, Check: &checkReq{Image: chk.Image, Tag: chk.Tag, Rule: chk.Rule.Name, Within: within(ctx)}}
	r, err := c.call(ctx, req)
	if err != nil {
		return failed(err)
	}
	switch {
	case r.ErrKind == "" && r.Verdict != nil:
		return decision.Outcome{Verdict: *r.Verdict}
	case r.ErrKind == "":
		return failed(fmt.Errorf("%w: a result without a verdict", ErrVerifier))
	}
	out := decision.Outcome{Err: resultErr(r)}
	if r.Verdict != nil && !r.Verdict.Allowed {
		out.Verdict = *r.Verdict
	} else {
		out.Verdict = cache.Verdict{Reasons: []string{out.Err.Error()}}
	}
	return out
}

// PickPulled asks the verifier which recorded digest runs
// (decision.Checker).
func (c *Client) PickPulled(ctx context.Context, tag string, candidates []string) (string, error) {
	r, err := c.call(ctx, &message{Type: typePick, Pick: &pickReq{Tag: tag, Candidates: candidates, Within: within(ctx)}})
	switch {
	case err != nil:
		return "", err
	case r.ErrKind != "":
		return "", resultErr(r)
	case r.Digest == "":
		return "", fmt.Errorf("%w: a result without a digest", ErrVerifier)
	}
	return r.Digest, nil
}

func within(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 0
}

func failed(err error) decision.Outcome {
	return decision.Outcome{Verdict: cache.Verdict{Reasons: []string{err.Error()}}, Err: err}
}

// unreachable is the verifier's message for sources that did not answer,
// as decision.ErrUnreachable.
type unreachable struct{ msg string }

func (u unreachable) Error() string        { return u.msg }
func (u unreachable) Is(target error) bool { return target == decision.ErrUnreachable }

// timedOut is the verifier's message for sources that did not answer in
// the time given, as decision.ErrFetchTimeout.
type timedOut struct{ msg string }

func (t timedOut) Error() string        { return t.msg }
func (t timedOut) Is(target error) bool { return target == decision.ErrFetchTimeout }

func resultErr(r *result) error {
	switch r.ErrKind {
	case kindUnreachable:
		return unreachable{r.Err}
	case kindTimeout:
		return timedOut{r.Err}
	case kindFailed:
		return errors.New(r.Err)
	}
	return fmt.Errorf("%w: unknown error kind %q: %s", ErrVerifier, r.ErrKind, r.Err)
}

// call sends m to the verifier, starting one if none runs, and waits for
// its result, the verifier's end or ctx's.
func (c *Client) call(ctx context.Context, m *message) (*result, error) {
	p, err := c.running(ctx)
	if err != nil {
		return nil, err
	}
	id, ch := p.register()
	defer p.release(id, c.idle)
	m.ID = id
	if err := p.send(m); err != nil {
		return nil, fmt.Errorf("%w: send: %v", ErrVerifier, err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-p.done:
		return nil, fmt.Errorf("%w exited while checking: %v", ErrVerifier, p.why())
	case <-ctx.Done():
		if cause := context.Cause(ctx); errors.Is(cause, decision.ErrFetchTimeout) {
			return nil, fmt.Errorf("%w (the verifier did not answer in time)", cause)
		}
		return nil, fmt.Errorf("waiting for the verifier: %w", context.Cause(ctx))
	}
}

// running returns the verifier, started if none runs.
func (c *Client) running(ctx context.Context) (*proc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("%w: the checker is closed", ErrVerifier)
	}
	if c.proc != nil && !c.proc.ended() && c.proc.busy() {
		return c.proc, nil
	}
	p, err := start(ctx, c.argv, c.exe, c.init, c.observe, c.stderr)
	if err != nil {
		return nil, err
	}
	c.starts++
	c.proc = p
	p.busy() // new: not stopping
	return p, nil
}
