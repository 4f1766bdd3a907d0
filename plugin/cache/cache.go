// Package cache keeps verdicts so that a second container of an image that
// was already verified is decided without the registry, in microseconds.
//
// The Store interface is what the decision engine sees. Memory is a bounded
// LRU in memory; Persistent is the same LRU, persisted in the background to
// one snapshot file whose records are each authenticated with a key derived
// from the TPM-sealed key, so verdicts survive a restart without anyone who
// can write the disk being able to forge or replay one across generations.
package cache

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/sealgate/sealgate/plugin/verdict"
)

// Key names a verdict. A verdict is only valid for the exact manifest digest,
// the repository it was verified for (a signature's docker-reference is
// checked against it), the rule that decided it and the policy (with every
// key it references) in force; change any of them and the verdict no longer
// applies.
type Key struct {
	Digest       string
	Repository   string
	Rule         string
	PolicyDigest string
}

// Verdict is the outcome of one verification.
type Verdict struct {
	Allowed bool
	// Reasons explain a denial, or say what was checked.
	Reasons []string
	// SatisfiedBy says which authority satisfied which requirement, with
	// its key or certificate identity and signing time (for reports).
	SatisfiedBy []verdict.Satisfier
	// VerifiedAt is when the signatures were checked.
	VerifiedAt time.Time
	// Clock is the TPM clock reading (extrapolated with the monotonic
	// clock) at verification time, 0 when unknown. The host can set its
	// wall clock back to make an old verdict look young; it cannot set the
	// TPM's clock back, so the offline age limit is measured against both.
	Clock time.Duration
	// Generation is the trust generation (the TPM's NV counter) the
	// verdict was decided under. Persistent stamps its own generation on a
	// verdict that has none and refuses one from another generation, so a
	// verdict never outlives the trust store that decided it.
	Generation uint64
}

// Store holds verdicts. Implementations are safe for concurrent use.
type Store interface {
	Get(k Key) (Verdict, bool)
	Put(k Key, v Verdict)
}

// DefaultMaxEntries bounds the in-memory cache when no size is given.
const DefaultMaxEntries = 10000

// Memory is a bounded, least-recently-used verdict store in memory.
//
// Its entries link themselves (no container/list element and interface
// box beside each), and its index is keyed by a 64-bit hash of the key
// rather than the key's four strings: a daemon holds 10,000 of them, and
// each byte of an entry is 10 KB of its resident memory. Two keys with one
// hash are told apart by the key each entry holds: a lookup of the other
// is a miss, and storing it replaces the one held.
type Memory struct {
	mu      sync.Mutex
	max     int
	seed    maphash.Seed
	head    entry // sentinel: head.next is the most recently used
	entries map[uint64]*entry
}

var _ Store = (*Memory)(nil)

type entry struct {
	key        Key
	verdict    Verdict
	prev, next *entry
}

// NewMemory returns a store that keeps at most maxEntries verdicts, dropping
// the least recently used first. maxEntries <= 0 means DefaultMaxEntries.
func NewMemory(maxEntries int) *Memory {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	m := &Memory{max: maxEntries, seed: maphash.MakeSeed(), entries: make(map[uint64]*entry)}
	m.head.prev, m.head.next = &m.head, &m.head
	return m
}

// hash is k's index in entries.
func (m *Memory) hash(k Key) uint64 {
	// Each field hashed on its own and mixed in order, so that moving
	// bytes from one field to the next changes the hash; a collision is
	// told apart by the key anyway.
	h := maphash.String(m.seed, k.Digest)
	for _, s := range [...]string{k.Repository, k.Rule, k.PolicyDigest} {
		h = (h ^ maphash.String(m.seed, s)) * 0x9e3779b97f4a7c15
	}
	return h
}

// unlink takes e out of the order.
func (m *Memory) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// pushFront makes e the most recently used.
func (m *Memory) pushFront(e *entry) {
	e.prev, e.next = &m.head, m.head.next
	m.head.next.prev = e
	m.head.next = e
}

// Get returns the verdict for k and marks it recently used.
func (m *Memory) Get(k Key) (Verdict, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[m.hash(k)]
	if !ok || e.key != k {
		return Verdict{}, false
	}
	if m.head.next != e {
		m.unlink(e)
		m.pushFront(e)
	}
	return e.verdict, true
}

// Put stores v under k, evicting the least recently used verdict when full.
func (m *Memory) Put(k Key, v Verdict) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hash(k)
	if e, ok := m.entries[h]; ok {
		e.key, e.verdict = k, v
		m.unlink(e)
		m.pushFront(e)
		return
	}
	e := &entry{key: k, verdict: v}
	m.entries[h] = e
	m.pushFront(e)
	for len(m.entries) > m.max {
		last := m.head.prev
		m.unlink(last)
		delete(m.entries, m.hash(last.key))
	}
}

// Len is the number of verdicts held.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// Purge drops every verdict.
func (m *Memory) Purge() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.head.prev, m.head.next = &m.head, &m.head
	clear(m.entries)
}
