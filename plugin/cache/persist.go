package cache

import (
	"bufio"
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Persistent is a verdict store that survives restarts: the same bounded LRU
// as Memory, written in the background to one snapshot file in its directory
// whose records are each authenticated with an HMAC-SHA256 key derived from
// the TPM-sealed key and bound to the trust generation.
//
// Get and Put touch memory only (a Put encodes and MACs its record, a few
// microseconds, but does no I/O); a background flusher writes the snapshot
// at most FlushDelay after a change, and Flush and Close write it at once.
//
// Why one snapshot rather than an append log or segments: the cache is
// bounded (10,000 verdicts are a few MiB), so rewriting it whole costs a
// few milliseconds off the hot path, while loading it is one sequential
// read, one pass of HMACs and no replay, compaction or deduplication; the
// file's record order is the LRU order, so recency survives a restart; and
// an atomic rename leaves either the old or the new snapshot after a crash,
// never a torn one.
//
// What the MACs do not stop: someone who can write the directory can delete
// records or the file (the verdicts are then verified again, or denied
// offline), or put back a record of the same trust generation that was
// evicted or purged; such a record is a verdict the current trust store
// did reach. Re-sealing (which moves the generation and, with a fresh sealed
// key, the MAC key) is what retires verdicts.
type Persistent struct {
	dir        string
	path       string
	generation uint64
	cfg        persistConfig
	macs       sync.Pool // hash.Hash keyed with the cache key
	dirFile    *os.File  // held open for the lock and to fsync the directory; nil read-only
	load       LoadStats

	mu          sync.Mutex
	order       *list.List // front = most recently used
	entries     map[Key]*list.Element
	seq         uint64 // changes so far
	flushedSeq  uint64 // changes in the last snapshot written
	touched     bool   // a Get reordered entries since the last snapshot
	closed      bool
	evicted     uint64
	rejected    uint64
	unpersisted uint64
	trimmed     int
	flushes     uint64
	flushErrors uint64
	lastFlush   time.Time
	lastErr     error

	flushMu sync.Mutex // one snapshot write at a time
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

var _ Store = (*Persistent)(nil)

// SnapshotFile is the name of the snapshot in the cache directory. A write
// goes to a temporary file (tempPattern) that is renamed over it.
const SnapshotFile = "verdicts.cache"

const tempPattern = ".verdicts-*.tmp"

// Defaults of the options.
const (
	DefaultFlushDelay  = 200 * time.Millisecond
	DefaultMaxFileSize = 64 << 20
)

// KeySize is the size of the MAC key: an HMAC-SHA256 key derived from the
// sealed key by the caller.
const KeySize = 32

// Sentinels callers branch on.
var (
	// ErrLocked: another store (process) has the directory open for
	// writing.
	ErrLocked = errors.New("verdict cache directory in use by another process")
	// ErrReadOnly: the store was opened WithReadOnly.
	ErrReadOnly = errors.New("verdict cache opened read-only")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("verdict cache closed")
)

// Entry is one verdict held, for listings.
type Entry struct {
	Key     Key
	Verdict Verdict
}

// LoadStats says what OpenPersistent found in the snapshot. Every record
// not loaded is counted under exactly one reason.
type LoadStats struct {
	// Loaded records are in the store.
	Loaded int
	// BadMAC records failed authentication: damaged, forged, or written
	// with another key (before a re-seal).
	BadMAC int
	// OldGeneration records were decided under an older trust generation.
	OldGeneration int
	// NewerGeneration records claim a generation newer than the store's,
	// which the TPM counter never allows: they are not used either.
	NewerGeneration int
	// Malformed counts damaged stretches: a record cut short, a bad
	// marker or length, or an authenticated body that does not decode.
	Malformed int
	// Duplicate records repeat a key already loaded (the earlier, more
	// recently used one wins).
	Duplicate int
	// OverLimit records were valid but beyond the store's maximum number
	// of entries (the least recently used).
	OverLimit int
	// StrayTemp counts temporary files of an interrupted write, removed.
	StrayTemp int
	// FileError says why the whole snapshot was ignored (too large, not a
	// cache file, unknown version, not a regular file, unreadable); nil
	// when it was read or did not exist.
	FileError error
	// Bytes is the size of the snapshot read.
	Bytes int
	// Duration is how long opening took.
	Duration time.Duration
}

// Ignored is the number of records found but not loaded.
func (s LoadStats) Ignored() int {
	return s.BadMAC + s.OldGeneration + s.NewerGeneration + s.Malformed + s.Duplicate + s.OverLimit
}

// Stats describes a Persistent store now.
type Stats struct {
	Entries    int
	MaxEntries int
	Generation uint64
	// Load is what OpenPersistent found.
	Load LoadStats
	// Evicted counts verdicts dropped to stay within MaxEntries.
	Evicted uint64
	// Rejected counts Puts refused because the verdict belongs to another
	// trust generation.
	Rejected uint64
	// Unpersisted counts Puts kept in memory only, their record being
	// larger than MaxRecordSize.
	Unpersisted uint64
	// Trimmed is the number of least recently used verdicts the last
	// snapshot left out to stay within the file size bound.
	Trimmed int
	// Dirty is true when memory holds changes not yet written.
	Dirty       bool
	Flushes     uint64
	FlushErrors uint64
	LastFlush   time.Time
	// LastFlushError is the error of the last write, nil once one succeeds.
	LastFlushError error
}

type persistConfig struct {
	maxEntries  int
	maxFileSize int64
	flushDelay  time.Duration
	readOnly    bool
	onError     func(error)
}

// PersistOption configures OpenPersistent.
type PersistOption func(*persistConfig) error

// WithMaxEntries bounds the number of verdicts held (default
// DefaultMaxEntries); the least recently used go first, in memory, in the
// snapshot and on load.
func WithMaxEntries(n int) PersistOption {
	return func(c *persistConfig) error {
		if n <= 0 {
			return fmt.Errorf("max entries %d: must be positive", n)
		}
		c.maxEntries = n
		return nil
	}
}

// WithMaxFileSize bounds the snapshot (default DefaultMaxFileSize): a larger
// file is not read, and a write leaves out the least recently used verdicts
// that would not fit.
func WithMaxFileSize(bytes int64) PersistOption {
	return func(c *persistConfig) error {
		if bytes < headerSize {
			return fmt.Errorf("max file size %d: must be at least %d", bytes, headerSize)
		}
		c.maxFileSize = bytes
		return nil
	}
}

// WithFlushDelay sets how long after a change the background flusher
// writes the snapshot (default DefaultFlushDelay): changes within it are
// written together, and no change waits longer.
func WithFlushDelay(d time.Duration) PersistOption {
	return func(c *persistConfig) error {
		if d <= 0 {
			return fmt.Errorf("flush delay %s: must be positive", d)
		}
		c.flushDelay = d
		return nil
	}
}

// WithReadOnly opens the store without writing anything: no lock, no
// flusher, no clean-up, Flush and Purge fail with ErrReadOnly. It is safe
// beside a running daemon (the snapshot is replaced by rename, never
// rewritten in place), for listings.
func WithReadOnly() PersistOption {
	return func(c *persistConfig) error {
		c.readOnly = true
		return nil
	}
}

// WithFlushErrorHandler sets a function the background flusher calls with
// each failed write (the package does not log; the daemon does). It runs on
// the flusher's goroutine and must not call Flush or Close.
func WithFlushErrorHandler(fn func(error)) PersistOption {
	return func(c *persistConfig) error {
		c.onError = fn
		return nil
	}
}

// OpenPersistent opens (creating it if need be) the verdict cache in dir,
// authenticated with key (KeySize bytes, derived from the sealed key) for
// trust generation generation, and loads the snapshot. A record that is
// damaged, forged, of another generation or beyond the bounds is ignored and
// counted in the LoadStats; so is a snapshot that cannot be read as a whole.
// Only a directory that cannot be created, opened or locked is an error.
func OpenPersistent(dir string, key []byte, generation uint64, opts ...PersistOption) (*Persistent, LoadStats, error) {
	start := time.Now()
	if len(key) != KeySize {
		return nil, LoadStats{}, fmt.Errorf("open verdict cache: key is %d bytes, want %d", len(key), KeySize)
	}
	cfg := persistConfig{maxEntries: DefaultMaxEntries, maxFileSize: DefaultMaxFileSize, flushDelay: DefaultFlushDelay}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, LoadStats{}, fmt.Errorf("open verdict cache: %w", err)
		}
	}
	k := bytes.Clone(key)
	p := &Persistent{
		dir:        dir,
		path:       filepath.Join(dir, SnapshotFile),
		generation: generation,
		cfg:        cfg,
		macs:       sync.Pool{New: func() any { return newMAC(k) }},
		order:      list.New(),
		entries:    make(map[Key]*list.Element),
	}
	if err := p.openDir(); err != nil {
		return nil, LoadStats{}, fmt.Errorf("open verdict cache %s: %w", dir, err)
	}
	p.loadSnapshot()
	if !cfg.readOnly {
		// Damage, stale records and leftovers are cleaned by the next
		// snapshot, written soon rather than at the next verdict.
		if p.load.Ignored() > 0 || p.load.FileError != nil {
			p.seq++
		}
		p.kick = make(chan struct{}, 1)
		p.stop = make(chan struct{})
		p.done = make(chan struct{})
		go p.flusher()
		if p.seq != p.flushedSeq {
			p.kick <- struct{}{}
		}
	}
	p.load.Duration = time.Since(start)
	return p, p.load, nil
}

// openDir creates, opens and (for writing) locks the directory, and removes
// the temporary files of an interrupted write.
func (p *Persistent) openDir() error {
	if p.cfg.readOnly {
		fi, err := os.Stat(p.dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // nothing cached yet
		case err != nil:
			return err
		case !fi.IsDir():
			return errors.New("not a directory")
		}
		_, err = os.ReadDir(p.dir)
		return err
	}
	if _, err := os.Stat(p.dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			return err
		}
		// Make the new directory's own entry durable, or the first
		// snapshots could vanish with it at a power loss.
		if err := syncDir(filepath.Dir(filepath.Clean(p.dir))); err != nil {
			return err
		}
	}
	d, err := os.Open(p.dir)
	if err != nil {
		return err
	}
	if fi, err := d.Stat(); err != nil || !fi.IsDir() {
		d.Close()
		if err == nil {
			err = errors.New("not a directory")
		}
		return err
	}
	if err := lockDir(d); err != nil {
		d.Close()
		return err
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return err
	}
	for _, n := range names {
		if ok, _ := filepath.Match(tempPattern, n); ok {
			// Ours and unfinished (we hold the lock): the snapshot it
			// was to replace is still whole.
			if os.Remove(filepath.Join(p.dir, n)) == nil {
				p.load.StrayTemp++
			}
		}
	}
	p.dirFile = d
	return nil
}

// loadSnapshot reads the snapshot into memory, counting what it ignores.
func (p *Persistent) loadSnapshot() {
	data, err := readBounded(p.path, p.cfg.maxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	p.load.Bytes = len(data)
	if err != nil {
		p.load.FileError = err
		return
	}
	recs, err := checkHeader(data)
	if err != nil {
		p.load.FileError = fmt.Errorf("%s: %w", p.path, err)
		return
	}
	mac := p.macs.Get().(hash.Hash)
	defer p.macs.Put(mac)
	// The loaded entries' records are slices of data, written back
	// verbatim by the next snapshot: one buffer rather than one
	// allocation per record, freed once every loaded entry is replaced.
	parseRecords(recs, mac, p.generation, &p.load, func(k Key, v Verdict, raw []byte) {
		switch {
		case p.entries[k] != nil:
			p.load.Duplicate++
		case p.order.Len() >= p.cfg.maxEntries:
			p.load.OverLimit++
		default:
			p.entries[k] = p.order.PushBack(&pentry{key: k, verdict: v, raw: raw})
			p.load.Loaded++
		}
	})
}

// readBounded reads path whole if it is a regular file of at most max bytes.
// It does not follow a symbolic link nor block on a FIFO that an attacker
// put in its place.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := openNoFollow(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s: %w: a symbolic link", path, ErrNotCacheFile)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file (%s)", path, ErrNotCacheFile, fi.Mode().Type())
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: %w: %d bytes (at most %d)", path, ErrFileTooLarge, fi.Size(), max)
	}
	// The size may change under us: read at most max+1 bytes whatever it
	// says now.
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, max+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(buf.Len()) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", path, ErrFileTooLarge, max)
	}
	return buf.Bytes(), nil
}

type pentry struct {
	key     Key
	verdict Verdict
	raw     []byte // the framed, MAC'd record; nil when not persisted
}

// Get returns the verdict for k and marks it recently used. Memory only.
func (p *Persistent) Get(k Key) (Verdict, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	el, ok := p.entries[k]
	if !ok {
		return Verdict{}, false
	}
	p.order.MoveToFront(el)
	p.touched = true
	return el.Value.(*pentry).verdict, true
}

// Put stores v under k, evicting the least recently used verdict when full,
// and schedules a snapshot. A verdict without a generation is stamped with
// the store's; one of another generation is not stored (it was decided
// under another trust store). Memory only: the record is encoded and MAC'd
// here, written by the flusher. A verdict that holds only until a
// certificate expires (a satisfier with ValidUntil, which the record does
// not carry) is refused: persisted, it would outlive the certificate.
func (p *Persistent) Put(k Key, v Verdict) {
	for _, s := range v.SatisfiedBy {
		if !s.ValidUntil.IsZero() {
			p.mu.Lock()
			p.rejected++
			p.mu.Unlock()
			return
		}
	}
	if v.Generation == 0 {
		v.Generation = p.generation
	}
	if v.Generation != p.generation {
		p.mu.Lock()
		p.rejected++
		p.mu.Unlock()
		return
	}
	mac := p.macs.Get().(hash.Hash)
	raw, err := appendRecord(nil, mac, k, v)
	p.macs.Put(mac)
	if err != nil {
		raw = nil
	}

	p.mu.Lock()
	if raw == nil {
		p.unpersisted++
	}
	if el, ok := p.entries[k]; ok {
		e := el.Value.(*pentry)
		e.verdict, e.raw = v, raw
		p.order.MoveToFront(el)
	} else {
		p.entries[k] = p.order.PushFront(&pentry{key: k, verdict: v, raw: raw})
		for p.order.Len() > p.cfg.maxEntries {
			last := p.order.Back()
			p.order.Remove(last)
			delete(p.entries, last.Value.(*pentry).key)
			p.evicted++
		}
	}
	p.seq++
	p.mu.Unlock()
	p.schedule()
}

// schedule wakes the flusher without waiting.
func (p *Persistent) schedule() {
	if p.kick == nil {
		return
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// flusher writes a snapshot FlushDelay after the first change it has not
// written: under a steady stream of Puts it writes every FlushDelay, never
// later.
func (p *Persistent) flusher() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		t := time.NewTimer(p.cfg.flushDelay)
		select {
		case <-p.stop:
			t.Stop()
			return // Close writes
		case <-t.C:
		}
		if err := p.flush(false); err != nil && p.cfg.onError != nil {
			p.cfg.onError(err)
		}
	}
}

// Flush writes the snapshot now if memory holds anything it does not (a
// change, or a new recency order), and returns when it is durable.
func (p *Persistent) Flush() error {
	if p.cfg.readOnly {
		return ErrReadOnly
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return p.flush(true)
}

// flush writes a snapshot when there are changes, or when withOrder and
// Gets reordered the entries. The flusher does not write for Gets alone:
// a busy node's cache hits would rewrite the file every FlushDelay.
func (p *Persistent) flush(withOrder bool) error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()

	p.mu.Lock()
	if p.seq == p.flushedSeq && !(withOrder && p.touched) {
		p.mu.Unlock()
		return nil
	}
	seq := p.seq
	recs := make([][]byte, 0, p.order.Len())
	for el := p.order.Front(); el != nil; el = el.Next() {
		if raw := el.Value.(*pentry).raw; raw != nil {
			recs = append(recs, raw)
		}
	}
	p.touched = false
	p.mu.Unlock()

	trimmed, err := p.writeSnapshot(recs)

	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.touched = true
		p.flushErrors++
		p.lastErr = err
		return err
	}
	p.flushedSeq = seq
	p.trimmed = trimmed
	p.flushes++
	p.lastFlush = time.Now()
	p.lastErr = nil
	return nil
}

// writeSnapshot writes recs (most recently used first, as many as the size
// bound allows) to a temporary file, syncs it, renames it over the snapshot
// and syncs the directory, so that after a crash or a power loss the
// directory holds the old snapshot or the new one, whole.
func (p *Persistent) writeSnapshot(recs [][]byte) (trimmed int, err error) {
	f, err := os.CreateTemp(p.dir, tempPattern)
	if err != nil {
		return 0, fmt.Errorf("write verdict cache: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write verdict cache: %w", err)
		}
	}()
	w := bufio.NewWriterSize(f, 256<<10)
	w.Write(appendHeader(nil))
	size := int64(headerSize)
	for i, r := range recs {
		if size+int64(len(r)) > p.cfg.maxFileSize {
			trimmed = len(recs) - i
			break
		}
		size += int64(len(r))
		w.Write(r)
	}
	if err = w.Flush(); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	if err = os.Rename(tmp, p.path); err != nil {
		return 0, err
	}
	if err = p.dirFile.Sync(); err != nil {
		// The rename happened; only its durability is in doubt.
		return 0, fmt.Errorf("write verdict cache: sync %s: %w", p.dir, err)
	}
	return trimmed, nil
}

// Close stops the flusher, writes what memory holds that the snapshot does
// not (recency order included), and releases the directory. Get and Put
// keep working on memory after Close; nothing more is written.
func (p *Persistent) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	if p.cfg.readOnly {
		return nil
	}
	close(p.stop)
	<-p.done
	err := p.flush(true)
	if cerr := p.dirFile.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close verdict cache: %w", cerr)
	}
	return err
}

// Purge drops every verdict, in memory and on disk, and returns when the
// empty snapshot is durable.
func (p *Persistent) Purge() error {
	if p.cfg.readOnly {
		return ErrReadOnly
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.order.Init()
	clear(p.entries)
	p.seq++
	p.mu.Unlock()
	if err := p.flush(true); err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	return nil
}

// Entries returns the verdicts held, most recently used first, without
// changing their order. The verdicts' slices are shared: do not modify.
func (p *Persistent) Entries() []Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Entry, 0, p.order.Len())
	for el := p.order.Front(); el != nil; el = el.Next() {
		e := el.Value.(*pentry)
		out = append(out, Entry{Key: e.key, Verdict: e.verdict})
	}
	return out
}

// Len is the number of verdicts held.
func (p *Persistent) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.order.Len()
}

// Generation is the trust generation the store was opened for.
func (p *Persistent) Generation() uint64 { return p.generation }

// Stats reports the store's state.
func (p *Persistent) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Entries:        p.order.Len(),
		MaxEntries:     p.cfg.maxEntries,
		Generation:     p.generation,
		Load:           p.load,
		Evicted:        p.evicted,
		Rejected:       p.rejected,
		Unpersisted:    p.unpersisted,
		Trimmed:        p.trimmed,
		Dirty:          p.seq != p.flushedSeq,
		Flushes:        p.flushes,
		FlushErrors:    p.flushErrors,
		LastFlush:      p.lastFlush,
		LastFlushError: p.lastErr,
	}
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
