package runtimegate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sealgate/sealgate/internal/strictjson"
)

// ErrNoAnswer wraps every way the daemon can fail to answer: no socket,
// nobody listening, a hung daemon, a malformed reply.
var ErrNoAnswer = errors.New("sealgate did not answer")

// Ask sends req to the daemon at socket and waits at most timeout for the
// answer.
func Ask(socket string, req Request, timeout time.Duration) (Answer, error) {
	deadline := time.Now().Add(timeout)
	conn, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	msg, err := json.Marshal(req)
	if err != nil {
		return Answer{}, fmt.Errorf("encode request: %w", err)
	}
	if _, err := conn.Write(append(msg, '\n')); err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	var a Answer
	if err := readLine(conn, &a); err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	return a, nil
}

// readLine reads one bounded JSON line into v, rejecting unknown fields and
// trailing data.
func readLine(r io.Reader, v any) error {
	br := bufio.NewReaderSize(io.LimitReader(r, maxMessage+1), 4096)
	line, err := br.ReadSlice('\n')
	for errors.Is(err, bufio.ErrBufferFull) {
		var more []byte
		more, err = br.ReadSlice('\n')
		line = append(line, more...)
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > maxMessage {
			return fmt.Errorf("message longer than %d bytes", maxMessage)
		}
		return fmt.Errorf("read message: %w", err)
	}
	if err := strictjson.Unmarshal(bytes.TrimRight(line, "\n"), v, 16); err != nil {
		return fmt.Errorf("decode message: %w", err)
	}
	return nil
}
