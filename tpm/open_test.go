package tpm

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealgate/sealgate/tpm/tpmtest"
)

// closedPort returns a 127.0.0.1 port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name     string
		spec     string
		opts     []Option
		noTPM    bool
		wantText string
	}{
		{"missing device", "/dev/sealgate-no-such-tpm", nil, true, "--insecure-no-tpm"},
		{"directory under /dev", "/dev/shm", nil, false, "not a device"},
		{"swtpm not running", "swtpm:" + closedPort(t), nil, true, "is swtpm running"},
		{"swtpm without port", "swtpm:127.0.0.1", nil, false, "swtpm:HOST:PORT"},
		{"swtpm port 0", "swtpm:127.0.0.1:0", nil, false, "bad port"},
		{"swtpm port not a number", "swtpm:127.0.0.1:tpm", nil, false, "bad port"},
		{"unknown kind", "tpm2-abrmd", nil, false, "unknown TPM"},
		{"relative path", "dev/tpmrm0", nil, false, "unknown TPM"},
		{"counter index not NV", "simulator", []Option{WithCounterIndex(0x81000000)}, false, "not an NV index"},
		{"zero timeout", "simulator", []Option{WithTimeout(0)}, false, "must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := Open(tc.spec, tc.opts...)
			if err == nil {
				tp.Close()
				t.Fatal("opened")
			}
			if errors.Is(err, ErrNoTPM) != tc.noTPM {
				t.Errorf("errors.Is(%v, ErrNoTPM) = %v, want %v", err, !tc.noTPM, tc.noTPM)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
		})
	}
}

// TestOpenNoSimulator: "simulator" is not a TPM Open knows: the simulator
// is package tpmsim's, for tests, and not linked into programs that only
// import tpm.
func TestOpenNoSimulator(t *testing.T) {
	if _, err := Open("simulator"); err == nil || !strings.Contains(err.Error(), "unknown TPM") {
		t.Fatalf("Open(simulator) = %v, want an unknown TPM", err)
	}
}

func TestOpenSwtpmFlags(t *testing.T) {
	tests := []struct {
		name     string
		flags    string
		wantText string // "" when Open must succeed
	}{
		{"started by swtpm", tpmtest.DefaultFlags, ""},
		{"never started: Open sends TPM2_Startup", "not-need-init", ""},
		{"not initialized", "", "not-need-init,startup-clear"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sw := tpmtest.StartSwtpmFlags(t, tc.flags)
			tp, err := Open(sw.Spec)
			if tc.wantText != "" {
				if err == nil {
					tp.Close()
					t.Fatal("opened")
				}
				if !strings.Contains(err.Error(), tc.wantText) {
					t.Errorf("error %q does not say %q", err, tc.wantText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			if _, err := tp.Clock(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSwtpmStops(t *testing.T) {
	sw := tpmtest.StartSwtpm(t)
	tp, err := Open(sw.Spec)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if err := sw.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Generation(); !errors.Is(err, ErrNoTPM) {
		t.Errorf("generation with swtpm gone: %v, want ErrNoTPM", err)
	}
}

// TestSwtpmConnectionShared checks that a handle held open (the daemon)
// does not lock another (the CLI) out: swtpm serves one connection at a
// time, so each operation connects and disconnects.
func TestSwtpmConnectionShared(t *testing.T) {
	sw := tpmtest.StartSwtpm(t)
	daemon, err := Open(sw.Spec, WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	if _, err := daemon.Clock(); err != nil {
		t.Fatal(err)
	}
	cli, err := Open(sw.Spec, WithTimeout(2*time.Second))
	if err != nil {
		t.Fatalf("second client while the first is open: %v", err)
	}
	defer cli.Close()
	if _, err := cli.Generation(); err != nil {
		t.Error(err)
	}
	if _, err := daemon.Generation(); err != nil {
		t.Error(err)
	}
}

// fakeSwtpm answers every command with reply(cmd) on one connection; a
// nil reply closes the connection.
func fakeSwtpm(t *testing.T, reply func(cmd []byte) []byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					r := reply(buf[:n])
					if r == nil {
						return
					}
					if _, err := c.Write(r); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// response builds a TPM response header claiming size bytes, followed by
// body.
func response(size uint32, rc uint32, body []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTNoSessions))
	b = binary.BigEndian.AppendUint32(b, size)
	b = binary.BigEndian.AppendUint32(b, rc)
	return append(b, body...)
}

func TestSwtpmFraming(t *testing.T) {
	tests := []struct {
		name     string
		reply    func(cmd []byte) []byte
		noTPM    bool
		wantText string
	}{
		{"size above the bound", func([]byte) []byte { return response(maxResponseSize+1, 0, nil) }, true, "out of range"},
		{"size below a header", func([]byte) []byte { return response(4, 0, nil) }, true, "out of range"},
		{"truncated body", func([]byte) []byte { return response(40, 0, make([]byte, 5)) }, true, "stopped answering"},
		{"closed at once", func([]byte) []byte { return nil }, true, "stopped answering"},
		{"silent", func([]byte) []byte { return []byte{} }, true, "i/o timeout"},
		{"TPM error", func([]byte) []byte { return response(10, uint32(tpm2.TPMRCLockout), nil) }, false, "lockout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeSwtpm(t, tc.reply)
			_, err := Open("swtpm:"+addr, WithTimeout(300*time.Millisecond))
			if err == nil {
				t.Fatal("opened")
			}
			if errors.Is(err, ErrNoTPM) != tc.noTPM {
				t.Errorf("errors.Is(%v, ErrNoTPM) = %v, want %v", err, !tc.noTPM, tc.noTPM)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
		})
	}
}

func TestTranslate(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		owner bool
		want  error
		text  string
	}{
		{"lockout", tpm2.TPMRCLockout, false, ErrLockout, "tpm2_dictionarylockout"},
		{"lockout on an owner command", tpm2.TPMRCLockout, true, ErrLockout, "lockout"},
		{"NV rate", tpm2.TPMRCNVRate, false, tpm2.TPMRCNVRate, "try again"},
		{"locality", tpm2.TPMRCLocality, false, tpm2.TPMRCLocality, "choose a PCR"},
		{"owner password", tpm2.TPMRC(0x9A2) /* TPM_RC_BAD_AUTH + TPM_RC_S + session 1 */, true, tpm2.TPMRCBadAuth, "owner password"},
		{"owner hierarchy disabled", tpm2.TPMRCHierarchy, true, tpm2.TPMRCHierarchy, "firmware"},
		{"other", tpm2.TPMRCValue, false, tpm2.TPMRCValue, "value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := translate(tc.err)
			if tc.owner {
				got = translateOwner(tc.err)
			}
			if !errors.Is(got, tc.want) {
				t.Errorf("%v does not wrap %v", got, tc.want)
			}
			if !strings.Contains(got.Error(), tc.text) {
				t.Errorf("%q does not say %q", got, tc.text)
			}
		})
	}
	if translate(nil) != nil {
		t.Error("translate(nil) != nil")
	}
}
