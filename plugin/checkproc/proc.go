package checkproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// proc is one verifier process.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	wmu   sync.Mutex // one frame at a time on stdin

	mu       sync.Mutex
	pending  map[uint64]chan *result
	nextID   uint64
	inflight int
	idle     *time.Timer
	stopping bool // no check may start on it any more

	done chan struct{} // closed when the verifier's output ended
	err  error         // why, set before done closes
}

// start runs argv (from exe when it is not nil), sends in and waits for
// the verifier to say it is ready.
func start(ctx context.Context, argv []string, exe *os.File, in Init, observe Observer, stderr io.Writer) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if exe != nil {
		// The child resolves this path before it closes its inherited
		// descriptors (close-on-exec), so it runs the file held open.
		cmd.Path = fmt.Sprintf("/proc/self/fd/%d", exe.Fd())
	}
	cmd.Stderr = stderr
	cmd.SysProcAttr = sysProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerifier, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerifier, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %v", ErrVerifier, argv[0], err)
	}
	p := &proc{cmd: cmd, stdin: stdin, pending: map[uint64]chan *result{}, done: make(chan struct{})}
	out := bufio.NewReader(stdout)
	ready := make(chan error, 1)
	go func() {
		ready <- p.handshake(out, in)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-timer.C:
		err = fmt.Errorf("not ready within %s", startTimeout)
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("%w: start: %v", ErrVerifier, err)
	}
	go p.read(out, observe)
	return p, nil
}

// handshake sends Init and reads the verifier's answer to it.
func (p *proc) handshake(out io.Reader, in Init) error {
	if err := p.send(&message{Type: typeInit, Init: &in}); err != nil {
		return fmt.Errorf("send init: %w", err)
	}
	m, err := readFrame(out)
	switch {
	case err != nil:
		return fmt.Errorf("read its answer to init: %w", err)
	case m.Type != typeReady:
		return fmt.Errorf("answered init with %q", m.Type)
	case m.Result != nil && m.Result.Err != "":
		return errors.New(m.Result.Err)
	}
	return nil
}

// read delivers the verifier's frames until its output ends.
func (p *proc) read(out io.Reader, observe Observer) {
	var err error
	for {
		var m *message
		m, err = readFrame(out)
		if err != nil {
			break
		}
		switch m.Type {
		case typeResult:
			if m.Result == nil {
				err = errors.New("a result frame without a result")
			} else {
				p.deliver(m.ID, m.Result)
			}
		case typeObserve:
			if observe != nil && m.Observe != nil {
				var oerr error
				if m.Observe.Err != "" {
					oerr = errors.New(m.Observe.Err)
				}
				observe(m.Observe.Host, m.Observe.Took, oerr)
			}
		default:
			err = fmt.Errorf("unexpected frame %q", m.Type)
		}
		if err != nil {
			break
		}
	}
	// Out of step or gone: either way this verifier is done.
	p.kill()
	werr := p.cmd.Wait()
	if errors.Is(err, io.EOF) && werr != nil {
		err = werr
	} else if errors.Is(err, io.EOF) {
		err = errors.New("it closed its output")
	}
	p.mu.Lock()
	p.err = err
	if p.idle != nil {
		p.idle.Stop()
	}
	p.mu.Unlock()
	close(p.done)
}

func (p *proc) deliver(id uint64, r *result) {
	p.mu.Lock()
	ch, ok := p.pending[id]
	delete(p.pending, id)
	p.mu.Unlock()
	if ok {
		ch <- r // buffered: never blocks
	}
}

func (p *proc) send(m *message) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return writeFrame(p.stdin, m)
}

// busy counts a check coming and stops the idle timer; false when the
// verifier is being stopped, and a new one must be started.
func (p *proc) busy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return false
	}
	p.inflight++
	if p.idle != nil {
		p.idle.Stop()
	}
	return true
}

func (p *proc) register() (uint64, chan *result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	ch := make(chan *result, 1)
	p.pending[p.nextID] = ch
	return p.nextID, ch
}

// release forgets id and, when nothing else is in flight, stops the
// verifier after idle.
func (p *proc) release(id uint64, idle time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pending, id)
	p.inflight--
	if p.inflight > 0 {
		return
	}
	if p.idle == nil {
		p.idle = time.AfterFunc(idle, p.stopIfIdle)
	} else {
		p.idle.Reset(idle)
	}
}

func (p *proc) stopIfIdle() {
	p.mu.Lock()
	idle := p.inflight == 0 && !p.stopping
	if idle {
		p.stopping = true
	}
	p.mu.Unlock()
	if idle {
		p.stop()
	}
}

// stop closes the verifier's input, which ends it; it is killed if it
// has not ended a few seconds later.
func (p *proc) stop() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.wmu.Lock()
	_ = p.stdin.Close()
	p.wmu.Unlock()
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.kill()
	}
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
}

func (p *proc) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) why() error {
	<-p.done
	return p.err
}
