package cache

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func key(i int) Key {
	return Key{Digest: fmt.Sprintf("sha256:%064d", i), Repository: "r", Rule: "x", PolicyDigest: "p"}
}

func TestMemoryGetPut(t *testing.T) {
	tests := []struct {
		name    string
		put     []Key
		get     Key
		wantHit bool
	}{
		{"empty", nil, key(1), false},
		{"hit", []Key{key(1)}, key(1), true},
		{"other digest", []Key{key(1)}, key(2), false},
		{"other policy", []Key{key(1)}, Key{Digest: key(1).Digest, Repository: "r", Rule: "x", PolicyDigest: "q"}, false},
		{"other repository", []Key{key(1)}, Key{Digest: key(1).Digest, Repository: "s", Rule: "x", PolicyDigest: "p"}, false},
		{"other rule", []Key{key(1)}, Key{Digest: key(1).Digest, Repository: "r", Rule: "y", PolicyDigest: "p"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory(10)
			for _, k := range tt.put {
				m.Put(k, Verdict{Allowed: true, VerifiedAt: time.Unix(1, 0)})
			}
			v, ok := m.Get(tt.get)
			if ok != tt.wantHit {
				t.Fatalf("hit = %v, want %v", ok, tt.wantHit)
			}
			if ok && !v.Allowed {
				t.Fatalf("got verdict %+v", v)
			}
		})
	}
}

func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	m := NewMemory(3)
	for i := range 3 {
		m.Put(key(i), Verdict{Allowed: true})
	}
	m.Get(key(0)) // 0 is now the most recent; 1 is the least
	m.Put(key(3), Verdict{Allowed: true})
	if _, ok := m.Get(key(1)); ok {
		t.Fatal("least recently used entry survived eviction")
	}
	for _, i := range []int{0, 2, 3} {
		if _, ok := m.Get(key(i)); !ok {
			t.Fatalf("entry %d evicted", i)
		}
	}
	if m.Len() != 3 {
		t.Fatalf("Len = %d, want 3", m.Len())
	}
	m.Purge()
	if m.Len() != 0 {
		t.Fatalf("Len after Purge = %d", m.Len())
	}
	// After a purge the order starts again: 4, 5, 6 then 7 evicts 4.
	for i := 4; i < 8; i++ {
		m.Put(key(i), Verdict{Allowed: true})
	}
	if _, ok := m.Get(key(4)); ok || m.Len() != 3 {
		t.Fatalf("after a purge: 4 kept %v, Len %d; want evicted, 3", ok, m.Len())
	}
	for _, i := range []int{5, 6, 7} {
		if _, ok := m.Get(key(i)); !ok {
			t.Fatalf("after a purge: entry %d evicted", i)
		}
	}
}

func TestMemoryConcurrent(t *testing.T) {
	m := NewMemory(50)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				k := key(g*1000 + i%100)
				m.Put(k, Verdict{Allowed: true})
				m.Get(k)
			}
		})
	}
	wg.Wait()
	if m.Len() > 50 {
		t.Fatalf("Len = %d exceeds bound", m.Len())
	}
}

func BenchmarkMemoryGet(b *testing.B) {
	m := NewMemory(0)
	for i := range 1000 {
		m.Put(key(i), Verdict{Allowed: true})
	}
	k := key(500)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := m.Get(k); !ok {
			b.Fatal("miss")
		}
	}
}

// TestMemoryHashCollision: two keys whose hashes collide are told apart
// by the key the entry holds: the other key misses, and storing it
// replaces the entry, never answering one key with the other's verdict.
func TestMemoryHashCollision(t *testing.T) {
	m := NewMemory(4)
	a, b := key(1), key(2)
	m.Put(a, Verdict{Allowed: true})
	// Make b's hash land on a's entry, as a collision would.
	delete(m.entries, m.hash(a))
	m.entries[m.hash(b)] = m.head.next
	if v, ok := m.Get(b); ok {
		t.Fatalf("b answered with a's verdict %+v", v)
	}
	m.Put(b, Verdict{Allowed: false, Reasons: []string{"b"}})
	if v, ok := m.Get(b); !ok || v.Allowed || m.Len() != 1 {
		t.Fatalf("after storing b: %+v %v, Len %d; want b's denial, one entry", v, ok, m.Len())
	}
}
