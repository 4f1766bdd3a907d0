package plugin

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sealgate/sealgate/plugin/decision"
)

// Warmer decides in the background, ahead of time, on images that are
// about to be used: those of containers that already exist when the plugin
// connects, and those containerd reports pulled. CreateContainer then
// almost always finds a cached verdict.
type Warmer struct {
	decider Decider
	log     *slog.Logger
	timeout time.Duration

	mu      sync.Mutex
	pending map[decision.Request]bool
	queue   chan warmItem
	once    sync.Once
}

type warmItem struct {
	req decision.Request
	why string
}

// Defaults of a Warmer.
const (
	warmWorkers = 2
	warmQueue   = 1024
	warmTimeout = 30 * time.Second
)

// NewWarmer returns a Warmer deciding with d; its workers start with the
// first request.
func NewWarmer(d Decider, log *slog.Logger) *Warmer {
	return &Warmer{decider: d, log: log, timeout: warmTimeout, pending: map[decision.Request]bool{}, queue: make(chan warmItem, warmQueue)}
}

// Warm queues a decision on req; why says where it came from, for the log.
// A request already queued is not queued twice, and a full queue drops it
// (the decision then happens at CreateContainer, as without the warmer).
func (w *Warmer) Warm(req decision.Request, why string) {
	w.once.Do(func() {
		for range warmWorkers {
			go w.work()
		}
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending[req] {
		return
	}
	select {
	case w.queue <- warmItem{req, why}:
		w.pending[req] = true
	default:
		w.log.Debug("ahead-of-time queue full; image will be decided at creation", "image", req.Image)
	}
}

func (w *Warmer) work() {
	for it := range w.queue {
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
		d := w.decider.Decide(ctx, it.req)
		cancel()
		w.mu.Lock()
		delete(w.pending, it.req)
		w.mu.Unlock()
		w.log.Info("decided ahead of time", "why", it.why, "image", d.Image, "digest", d.Digest, "rule", d.Rule,
			"allowed", d.Allowed, "wouldDeny", d.WouldDeny, "source", d.Source, "reasons", d.Reasons)
	}
}
