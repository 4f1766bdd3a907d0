package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpmutil"
)

// maxResponseSize bounds a response read from a socket: TPM responses are
// at most a few KiB (MAX_RESPONSE_SIZE is 4096 on common TPMs), and the
// size comes from the peer.
const maxResponseSize = 1 << 16

// responseHeaderSize is a TPM response header: tag (2), size (4), code (4).
const responseHeaderSize = 10

// swtpmConn is the transport to swtpm's TCP server socket, which carries
// raw TPM command and response buffers (no TCP framing of its own). It
// dials when it has a command to send and drops the connection after
// each operation (disconnect), because swtpm serves one connection at a
// time. An I/O error closes the connection, so that the next command starts
// on a clean stream.
type swtpmConn struct {
	addr    string
	timeout time.Duration

	mu   sync.Mutex
	conn net.Conn
	// rsp is the response read for the last command, waiting for Read.
	rsp []byte
}

var _ transport.TPMCloser = (*swtpmConn)(nil)

// Send implements transport.TPM; tpmutil.RunCommandRaw retries the
// command while the TPM answers TPM_RC_RETRY.
func (c *swtpmConn) Send(cmd []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return tpmutil.RunCommandRaw(swtpmRW{c}, cmd)
}

// swtpmRW adapts swtpmConn to the io.ReadWriter RunCommandRaw expects:
// Write sends a command, Read returns its whole response.
type swtpmRW struct{ c *swtpmConn }

func (rw swtpmRW) Write(cmd []byte) (int, error) {
	c := rw.c
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return 0, fmt.Errorf("%w at swtpm:%s: %v: is swtpm running (swtpm socket --tpm2 --server type=tcp,port=PORT --flags not-need-init,startup-clear)? or %s",
				ErrNoTPM, c.addr, err, noTPMHint)
		}
		c.conn = conn
	}
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, c.fail(err)
	}
	if _, err := c.conn.Write(cmd); err != nil {
		return 0, c.fail(err)
	}
	rsp, err := readResponse(c.conn)
	if err != nil {
		return 0, c.fail(err)
	}
	c.rsp = rsp
	return len(cmd), nil
}

func (rw swtpmRW) Read(p []byte) (int, error) {
	c := rw.c
	if c.rsp == nil {
		return 0, errors.New("swtpm: read without a command")
	}
	if len(p) < len(c.rsp) {
		return 0, fmt.Errorf("swtpm: response of %d bytes exceeds the %d-byte buffer", len(c.rsp), len(p))
	}
	n := copy(p, c.rsp)
	c.rsp = nil
	return n, nil
}

// readResponse reads one TPM response: the header, then as many bytes as
// its size field says, within maxResponseSize.
func readResponse(r io.Reader) ([]byte, error) {
	hdr := make([]byte, responseHeaderSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < responseHeaderSize || size > maxResponseSize {
		return nil, fmt.Errorf("response size %d out of range [%d, %d]", size, responseHeaderSize, maxResponseSize)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(r, rsp[responseHeaderSize:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return rsp, nil
}

// fail drops the connection after an I/O error and says swtpm stopped
// answering.
func (c *swtpmConn) fail(err error) error {
	c.conn.Close()
	c.conn = nil
	c.rsp = nil
	return fmt.Errorf("%w at swtpm:%s: it stopped answering: %v", ErrNoTPM, c.addr, err)
}

// disconnect closes the connection between operations.
func (c *swtpmConn) disconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// Close implements io.Closer.
func (c *swtpmConn) Close() error {
	c.disconnect()
	return nil
}
