package runtimegate

import (
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
// person with crictl may wait longer. A record is used once.
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

	mu sync.Mutex
	m  map[string]Record
}

// NewRecords returns an empty store; ttl and max <= 0 take the defaults.
func NewRecords(ttl time.Duration, max int) *Records {
	if ttl <= 0 {
		ttl = DefaultRecordTTL
	}
	if max <= 0 {
		max = DefaultMaxRecords
	}
	return &Records{ttl: ttl, max: max, now: time.Now, m: map[string]Record{}}
}

// Put records the decision about container id, replacing an earlier one.
func (r *Records) Put(id string, rec Record) {
	if rec.At.IsZero() {
		rec.At = r.now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[id]; !ok && len(r.m) >= r.max {
		r.evictLocked()
	}
	r.m[id] = rec
}

// Take returns the record of container id and forgets it: the runtime
// creates a container's task once.
func (r *Records) Take(id string) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.m[id]
	if !ok {
		return Record{}, false
	}
	delete(r.m, id)
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

// evictLocked drops expired records, and the oldest one if none expired.
func (r *Records) evictLocked() {
	now := r.now()
	var oldestID string
	var oldest time.Time
	for id, rec := range r.m {
		if now.Sub(rec.At) > r.ttl {
			delete(r.m, id)
			continue
		}
		if oldestID == "" || rec.At.Before(oldest) {
			oldestID, oldest = id, rec.At
		}
	}
	if len(r.m) >= r.max && oldestID != "" {
		delete(r.m, oldestID)
	}
}
