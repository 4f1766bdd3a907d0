package decisionlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// Defaults of a Writer.
const (
	DefaultMaxBytes = 64 << 20
	DefaultKeep     = 4
	// defaultQueue is how many decisions wait for the writer, which
	// drains every 20 ms: 200 ms of decisions at 5,000 a second before
	// one is counted lost, without holding memory for more.
	defaultQueue = 1024
)

// Writer appends decisions to a log file, rotating it by size; Run, the one
// task that owns the file, writes what Add queued.
type Writer struct {
	path     string
	maxBytes int64
	keep     int
	queue    chan Entry
	lost     atomic.Uint64

	f    *os.File
	buf  *bufio.Writer
	line []byte // the line being written, reused
	size int64
	seq  uint64
	prev string
}

// Option configures a Writer.
type Option func(*Writer) error

// WithRotation rotates the file when it would pass maxBytes, keeping keep
// older files (path.1 the newest).
func WithRotation(maxBytes int64, keep int) Option {
	return func(w *Writer) error {
		if maxBytes < 4096 || keep < 1 {
			return fmt.Errorf("rotation: at least 4096 bytes a file and one file kept")
		}
		w.maxBytes, w.keep = maxBytes, keep
		return nil
	}
}

// Open continues the chain of the log at path (or starts one), so that a
// restart keeps it whole. A last line cut off by a crash is dropped.
func Open(path string, opts ...Option) (*Writer, error) {
	w := &Writer{path: path, maxBytes: DefaultMaxBytes, keep: DefaultKeep, queue: make(chan Entry, defaultQueue)}
	for _, o := range opts {
		if err := o(w); err != nil {
			return nil, fmt.Errorf("decision log: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("decision log: %w", err)
	}
	last, size, err := lastLine(path)
	if errors.Is(err, os.ErrNotExist) {
		last, _, err = lastLine(path + ".1")
		size = 0
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("decision log: %w", err)
	}
	if last != nil {
		var e Entry
		if err := json.Unmarshal(last, &e); err != nil {
			return nil, fmt.Errorf("decision log %s: the last line is not a decision line (%v); move the file away to start a new chain", path, err)
		}
		w.seq, w.prev = e.Seq, hashLine(last)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("decision log: %w", err)
	}
	if err := f.Truncate(size); err != nil { // drops a torn last line
		f.Close()
		return nil, fmt.Errorf("decision log: %w", err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("decision log: %w", err)
	}
	w.f, w.buf, w.size = f, bufio.NewWriterSize(f, 64<<10), size
	return w, nil
}

// lastLine returns the last complete line of the file and the length of
// the file up to and including it.
func lastLine(path string) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	from := max(st.Size()-2*maxLine, 0)
	b := make([]byte, st.Size()-from)
	if _, err := f.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		return nil, from, nil
	}
	start := bytes.LastIndexByte(b[:end], '\n') + 1
	return b[start:end], from + int64(end) + 1, nil
}

// Add queues e without waiting; when the queue is full the decision is
// counted as lost and said in the next line written.
func (w *Writer) Add(e Entry) {
	select {
	case w.queue <- e:
	default:
		w.lost.Add(1)
	}
}

// Lost is how many decisions could not be written so far.
func (w *Writer) Lost() uint64 { return w.lost.Load() }

// flushEvery is how often written lines reach the file and the head file
// moves: at most this much of the log is lost in a crash.
const flushEvery = 200 * time.Millisecond

// drainEvery is how often the queue is emptied. The writer polls rather
// than waits on the queue: a waiting reader would be woken by every
// decision, a thread wake-up per decision on the runtime's path.
const drainEvery = 20 * time.Millisecond

// Run writes queued decisions until ctx ends, then what is still queued,
// and closes the file. The queue is emptied every drainEvery; lines reach
// the file, and the head file moves, every flushEvery while there are any,
// so that a burst of decisions costs a write per buffer, not per line.
func (w *Writer) Run(ctx context.Context) error {
	defer w.f.Close()
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	dirty, lastFlush := false, time.Now()
	drain := func() {
		for {
			select {
			case e := <-w.queue:
				w.write(e)
				dirty = true
			default:
				return
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			drain()
			w.flush()
			return nil
		case now := <-t.C:
			drain()
			if dirty && now.Sub(lastFlush) >= flushEvery {
				w.flush()
				dirty, lastFlush = false, now
			}
		}
	}
}

func (w *Writer) write(e Entry) {
	e.Seq, e.Prev = w.seq+1, w.prev
	e.Lost = w.lost.Swap(0)
	w.line = appendEntry(w.line[:0], &e)
	line := w.line
	if len(line) >= maxLine {
		w.lost.Add(1 + e.Lost)
		return
	}
	if w.size > 0 && w.size+int64(len(line))+1 > w.maxBytes {
		if err := w.rotate(); err != nil {
			w.lost.Add(1 + e.Lost)
			return
		}
	}
	w.line = append(w.line, '\n')
	if _, err := w.buf.Write(w.line); err != nil {
		// A full disk: the line is lost, said in the next one; the
		// chain goes on from the last line written.
		w.buf.Reset(w.f)
		w.lost.Add(1 + e.Lost)
		return
	}
	w.size += int64(len(line)) + 1
	w.seq, w.prev = e.Seq, hashLine(line)
}

func (w *Writer) flush() {
	if err := w.buf.Flush(); err != nil {
		w.buf.Reset(w.f)
		return
	}
	head, _ := json.Marshal(Head{Seq: w.seq, Hash: w.prev})
	tmp := w.path + ".head.tmp"
	if err := os.WriteFile(tmp, head, 0o600); err == nil {
		_ = os.Rename(tmp, w.path+".head")
	}
}

// rotate moves path to path.1 (and path.N to path.N+1, dropping the
// oldest) and starts a new file that continues the chain.
func (w *Writer) rotate() error {
	if err := w.buf.Flush(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	for i := w.keep - 1; i >= 1; i-- {
		_ = os.Rename(w.path+"."+strconv.Itoa(i), w.path+"."+strconv.Itoa(i+1))
	}
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		return err
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w.f, w.size = f, 0
	w.buf.Reset(f)
	return nil
}

// Files lists the log's files oldest first, as Verify takes them.
func Files(path string) []string {
	var out []string
	for i := 64; i >= 1; i-- {
		if p := path + "." + strconv.Itoa(i); exists(p) {
			out = append(out, p)
		}
	}
	if exists(path) {
		out = append(out, path)
	}
	return out
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
