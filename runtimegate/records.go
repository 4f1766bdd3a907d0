package runtimegate

import (
	"container/list"
	"sync"
	"time"
)

// Record is what the daemon decided about one container at NRI
// CreateContainer time.
type Record struct {
	// Image is the container's AnnotationImageName as NRI showed it; the
	// runtime's spec must carry the same.
	Image     string
	SandboxID string
	Allowed   bool
	// Reason is the denial (or the mode that allowed it), for the
	// runtime's error.
	Reason string
	At     time.Time
}

// Record lifetimes. The CRI creates a container's runtime task at
// StartContainer, which kubelet calls right after CreateContainer; a
// person with crictl may wait longer. A record is used once; the bound
// keeps those never used (a container created and removed unstarted) to
// about a MiB.
const (
	DefaultRecordTTL  = time.Hour
	DefaultMaxRecords = 4096
)

// Records holds decisions by container ID until the runtime asks about
// them, for at most a TTL. It never grows past its maximum: the oldest
// records go first, and a container whose record went is refused (the
// kubelet creates it again).
type Records struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	m     map[string]*list.Element // of *record
	order list.List                // oldest first
}

type record struct {
	id  string
	rec Record
}

// NewRecords returns an empty store; ttl and max <= 0 take the defaults.
func NewRecords(ttl time.Duration, max int) *Records {
	if ttl <= 0 {
		ttl = DefaultRecordTTL
	}
	if max <= 0 {
		max = DefaultMaxRecords
	}
	return &Records{ttl: ttl, max: max, now: time.Now, m: map[string]*list.Element{}}
}

// Put records the decision about container id, replacing an earlier one.
// It costs the same however many records are held.
func (r *Records) Put(id string, rec Record) {
	if rec.At.IsZero() {
		rec.At = r.now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.m[id]; ok {
		el.Value.(*record).rec = rec
		r.order.MoveToBack(el)
		return
	}
	r.expireLocked(rec.At)
	if len(r.m) >= r.max {
		r.removeLocked(r.order.Front())
	}
	r.m[id] = r.order.PushBack(&record{id: id, rec: rec})
}

// Take returns the record of container id and forgets it: the runtime
// creates a container's task once.
func (r *Records) Take(id string) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.m[id]
	if !ok {
		return Record{}, false
	}
	r.removeLocked(el)
	rec := el.Value.(*record).rec
	if r.now().Sub(rec.At) > r.ttl {
		return Record{}, false
	}
	return rec, true
}

// Len is the number of records held.
func (r *Records) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// expireLocked drops the records older than the TTL at now, oldest first.
func (r *Records) expireLocked(now time.Time) {
	for el := r.order.Front(); el != nil && now.Sub(el.Value.(*record).rec.At) > r.ttl; el = r.order.Front() {
		r.removeLocked(el)
	}
}

func (r *Records) removeLocked(el *list.Element) {
	r.order.Remove(el)
	delete(r.m, el.Value.(*record).id)
}
