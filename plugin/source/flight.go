package source

import (
	"context"
	"sync"

	"golang.org/x/sync/singleflight"
)

// flightGroup makes concurrent calls for one key once. Unlike a bare
// singleflight.Group, the shared call does not run under the first caller's
// context: it runs under its own, which is cancelled only when every caller
// waiting for it has gone. Each caller still returns as soon as its own
// context is done.
type flightGroup struct {
	group   singleflight.Group
	mu      sync.Mutex
	flights map[string]*flight
}

type flight struct {
	ctx     context.Context
	cancel  context.CancelFunc
	waiters int
}

// do runs fn once for all concurrent callers with the same key. The invariant
// kept under mu: flights[key] exists exactly while the singleflight call for
// key that runs with flights[key].ctx is in flight.
func (g *flightGroup) do(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g.mu.Lock()
	if g.flights == nil {
		g.flights = map[string]*flight{}
	}
	f := g.flights[key]
	if f == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{ctx: fctx, cancel: cancel}
		g.flights[key] = f
	}
	f.waiters++
	ch := g.group.DoChan(key, func() (any, error) {
		defer g.remove(key, f)
		return fn(f.ctx)
	})
	g.mu.Unlock()

	select {
	case res := <-ch:
		g.leave(key, f)
		return res.Val, res.Err
	case <-ctx.Done():
		g.leave(key, f)
		return nil, ctx.Err()
	}
}

// remove ends f's flight so that later callers start a new call.
func (g *flightGroup) remove(key string, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.removeLocked(key, f)
}

func (g *flightGroup) removeLocked(key string, f *flight) {
	if g.flights[key] == f {
		delete(g.flights, key)
		g.group.Forget(key)
	}
}

// leave drops one waiter; the last one cancels the shared call.
func (g *flightGroup) leave(key string, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.waiters--
	if f.waiters == 0 {
		f.cancel()
		g.removeLocked(key, f)
	}
}
