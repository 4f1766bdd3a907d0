package runtimegate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Checker answers the runtime gate's questions; the daemon implements it
// from its decisions.
type Checker interface {
	// Check says whether the container req names may be created.
	Check(ctx context.Context, req Request) Answer
	// Status reports the daemon's state for `sealgate doctor`.
	Status() Status
}

// PullVerifier is a Checker that can also decide on an image containerd is
// about to pull (OpPull).
type PullVerifier interface {
	VerifyPull(ctx context.Context, image, digest string) Answer
}

// Reloader is a Checker that can also reload the daemon's trust store
// when asked (OpReload).
type Reloader interface {
	Reload() error
}

// connTimeout bounds one connection: a client that sends nothing must not
// hold a goroutine for long.
const connTimeout = 5 * time.Second

// Server serves Checker on a unix socket that only root reaches.
type Server struct {
	checker Checker
	ln      *net.UnixListener
	path    string
	// onError is told about connections it refused (not root, malformed).
	onError func(error)
	wg      sync.WaitGroup
}

// Listen creates the socket at path (its folder 0700, the socket 0600),
// replacing a stale one a killed daemon left.
func Listen(path string, c Checker, onError func(error)) (*Server, error) {
	if c == nil {
		return nil, errors.New("runtime gate: nil checker")
	}
	if onError == nil {
		onError = func(error) {}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("runtime gate socket folder: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("runtime gate socket folder: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale runtime gate socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("runtime gate socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("runtime gate socket: %w", err)
	}
	return &Server{checker: c, ln: ln, path: path, onError: onError}, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers until ctx ends, then closes the socket and waits for the
// connections in flight.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	defer s.wg.Wait()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			s.onError(fmt.Errorf("runtime gate: accept: %w", err))
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(ctx, conn)
		}()
	}
}

// Close closes the socket.
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) serve(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(connTimeout))
	if uid, err := peerUID(conn); err != nil || uid != 0 {
		s.onError(fmt.Errorf("runtime gate: refused a connection from uid %d (only root may ask): %v", uid, err))
		return
	}
	var req Request
	if err := readLine(conn, &req); err != nil {
		s.onError(fmt.Errorf("runtime gate: %w", err))
		return
	}
	var a Answer
	switch req.Op {
	case OpCheck:
		a = s.checker.Check(ctx, req)
	case OpStatus:
		st := s.checker.Status()
		a = Answer{Allowed: true, Status: &st}
	case OpPull:
		v, ok := s.checker.(PullVerifier)
		if !ok {
			a = Answer{Reason: "sealgate: this daemon does not verify pulls"}
			break
		}
		a = v.VerifyPull(ctx, req.Image, req.Digest)
	case OpReload:
		r, ok := s.checker.(Reloader)
		if !ok {
			a = Answer{Reason: "sealgate: this daemon cannot reload its trust store"}
			break
		}
		err := r.Reload()
		st := s.checker.Status()
		a = Answer{Allowed: err == nil, Status: &st}
		if err != nil {
			a.Reason = err.Error()
		}
	default:
		a = Answer{Reason: fmt.Sprintf("sealgate: unknown runtime gate operation %q", req.Op)}
	}
	msg, err := json.Marshal(a)
	if err != nil {
		s.onError(fmt.Errorf("runtime gate: encode answer: %w", err))
		return
	}
	if _, err := conn.Write(append(msg, '\n')); err != nil {
		s.onError(fmt.Errorf("runtime gate: write answer: %w", err))
	}
}

// peerUID returns the uid of the process at the other end of conn.
func peerUID(conn *net.UnixConn) (int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}
