// Package tpmtest starts the software TPMs sealgate's tests run against:
// Debian's swtpm on free 127.0.0.1 ports, with its state in a temporary
// directory, stopped when the test ends. A test opens it with
// tpm.Open(s.Spec). swtpm is found like every tool (internal/testenv): a
// test skips when it is missing, and fails instead under
// SEALGATE_REQUIRE_TOOLS=1.
package tpmtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testenv"
)

// DefaultFlags are the swtpm --flags of StartSwtpm: no CMD_INIT needed on
// the control channel, and TPM2_Startup(CLEAR) sent by swtpm itself, as a
// booted node's firmware would have done.
const DefaultFlags = "not-need-init,startup-clear"

// startTimeout bounds how long swtpm may take to listen.
const startTimeout = 10 * time.Second

// Swtpm is a running swtpm.
type Swtpm struct {
	// Spec is what tpm.Open takes to reach it: "swtpm:127.0.0.1:PORT".
	// Restart may change it.
	Spec string
	// StateDir holds the TPM's persistent state (NV, seeds); it survives
	// Restart, as a TPM's NV survives a reboot.
	StateDir string

	bin   string
	flags string
	log   string
	cmd   *exec.Cmd
	done  chan struct{}
}

// StartSwtpm starts swtpm with DefaultFlags and stops it when the test
// ends.
func StartSwtpm(t testing.TB) *Swtpm {
	t.Helper()
	return StartSwtpmFlags(t, DefaultFlags)
}

// StartSwtpmFlags starts swtpm with the given --flags ("" for none) and
// stops it when the test ends.
func StartSwtpmFlags(t testing.TB, flags string) *Swtpm {
	t.Helper()
	s := &Swtpm{
		bin:      testenv.RequireTool(t, "swtpm"),
		flags:    flags,
		StateDir: t.TempDir(),
		log:      filepath.Join(t.TempDir(), "swtpm.log"),
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop swtpm: %v", err)
		}
	})
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Launch starts swtpm with DefaultFlags and its state in stateDir, outside
// a test (the demo's throw-away node); the caller stops it.
func Launch(stateDir string) (*Swtpm, error) {
	bin, err := testenv.Tool("swtpm")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	s := &Swtpm{bin: bin, flags: DefaultFlags, StateDir: stateDir, log: filepath.Join(stateDir, "swtpm.log")}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart stops swtpm and starts it again on the same state, as a reboot
// of the node does to its TPM: NV and seeds stay, PCRs are reset, and
// ResetCount goes up.
func (s *Swtpm) Restart(t testing.TB) {
	t.Helper()
	if err := s.Stop(); err != nil {
		t.Fatalf("restart swtpm: %v", err)
	}
	if err := s.start(); err != nil {
		t.Fatalf("restart swtpm: %v", err)
	}
}

// start starts swtpm on fresh free ports, trying again when another
// program took a port between the probe and swtpm's bind.
func (s *Swtpm) start() error {
	var errs []error
	for range 5 {
		err := s.startOnce()
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("start swtpm: %w", errors.Join(errs...))
}

func (s *Swtpm) startOnce() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	ctrl, err := freePort()
	if err != nil {
		return err
	}
	args := []string{"socket", "--tpm2",
		"--server", "type=tcp,bindaddr=127.0.0.1,port=" + strconv.Itoa(port),
		"--ctrl", "type=tcp,bindaddr=127.0.0.1,port=" + strconv.Itoa(ctrl),
		"--tpmstate", "dir=" + s.StateDir,
		"--log", "file=" + s.log + ",level=1",
	}
	if s.flags != "" {
		args = append(args, "--flags", s.flags)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("swtpm exited at start (%v): %s", cmd.ProcessState, s.logTail())
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("swtpm did not listen on %s within %v: %s", addr, startTimeout, s.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.cmd, s.done = cmd, done
	s.Spec = "swtpm:" + addr
	return nil
}

// Stop stops swtpm (SIGTERM, then SIGKILL after 5s). It is safe to call
// twice.
func (s *Swtpm) Stop() error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal swtpm: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("swtpm ignored SIGTERM for 5s and was killed: %s", s.logTail())
	}
}

func (s *Swtpm) logTail() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return "(no log)"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "swtpm log: " + string(b)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
