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
	"container/list"
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
type Memory struct {
	mu      sync.Mutex
	max     int
	order   *list.List // front = most recently used
	entries map[Key]*list.Element
}

var _ Store = (*Memory)(nil)

type entry struct {
	key     Key
	verdict Verdict
}

// NewMemory returns a store that keeps at most maxEntries verdicts, dropping
// the least recently used first. maxEntries <= 0 means DefaultMaxEntries.
func NewMemory(maxEntries int) *Memory {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	return &Memory{max: maxEntries, order: list.New(), entries: make(map[Key]*list.Element)}
}

// Get returns the verdict for k and marks it recently used.
func (m *Memory) Get(k Key) (Verdict, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.entries[k]
	if !ok {
		return Verdict{}, false
	}
	m.order.MoveToFront(el)
	return el.Value.(*entry).verdict, true
}

// Put stores v under k, evicting the least recently used verdict when full.
func (m *Memory) Put(k Key, v Verdict) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.entries[k]; ok {
		el.Value.(*entry).verdict = v
		m.order.MoveToFront(el)
		return
	}
	m.entries[k] = m.order.PushFront(&entry{key: k, verdict: v})
	for m.order.Len() > m.max {
		last := m.order.Back()
		m.order.Remove(last)
		delete(m.entries, last.Value.(*entry).key)
	}
}

// Len is the number of verdicts held.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}

// Purge drops every verdict.
func (m *Memory) Purge() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.order.Init()
	clear(m.entries)
}
