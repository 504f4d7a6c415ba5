package gate

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// subscriber receives a connection's verdicts. Its channel holds one
// verdict: a new one replaces one not yet taken, so a slow reader sees the
// latest verdict and never holds up the gate or other readers.
type subscriber struct {
	ch chan Verdict
}

// offer is called under the entry's lock, so offers never race each other;
// the reader may take concurrently, which only makes room.
func (s *subscriber) offer(v Verdict) {
	select {
	case s.ch <- v:
		return
	default:
	}
	select {
	case <-s.ch:
	default:
	}
	select {
	case s.ch <- v:
	default:
	}
}

// Subscribe follows a connection's verdict. The channel first gets the
// current verdict: from the cached evidence, or from a gathering started now
// (within the budget) when there is none or it is too old; then each change
// of decision or conditions. Timestamps alone are not a change. The channel
// is closed by cancel or when the Gate closes; cancel may be called more
// than once.
func (g *Gate) Subscribe(connID string) (<-chan Verdict, func(), error) {
	e, err := g.entry(connID)
	if err != nil {
		return nil, nil, err
	}
	s := &subscriber{ch: make(chan Verdict, 1)}
	_, ended, _ := g.activity(g.base, connID)
	e.mu.Lock()
	defer e.mu.Unlock()
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return nil, nil, ErrClosed
	}
	now := g.now()
	g.forgetOutdatedLocked(e, ended, now)
	e.subs[s] = struct{}{}
	if e.hasPublished {
		s.offer(e.published.withAge(now))
	}
	if !e.ev.Complete() || now.Sub(e.ev.CheckedAt) > g.o.DefaultMaxEvidenceAge {
		// The gathering's verdict reaches s when it is published.
		c, err := g.startLocked(e, now)
		if err == nil && c == nil && !e.hasPublished {
			s.offer(staleVerdict(e, now, g.o.DefaultMaxEvidenceAge, g.o.ProbeInterval, e.started.Add(g.o.ProbeInterval).Sub(now)))
		}
	}
	cancel := sync.OnceFunc(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if _, ok := e.subs[s]; ok {
			delete(e.subs, s)
			close(s.ch)
		}
	})
	return s.ch, cancel, nil
}

// Run refreshes every connection's evidence each RefreshInterval (moved by
// up to ±RefreshJitter at random) until ctx ends; it returns nil then. One
// scheduler loop keeps a queue ordered by due time, with one item per
// connection that is moved, never added, so memory stays flat however long
// it runs; RefreshConcurrency workers do the gathering. Before refreshing a
// connection it asks the Locker for "refresh:"+id, so that of several
// replicas only one probes SF each round. With RefreshInterval 0 it only
// waits for ctx.
func (g *Gate) Run(ctx context.Context) error {
	interval := g.o.RefreshInterval
	if interval <= 0 || len(g.list) == 0 {
		<-ctx.Done()
		return nil
	}
	work := make(chan *entry)
	var workers sync.WaitGroup
	for range g.o.RefreshConcurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for e := range work {
				g.backgroundRefresh(ctx, e)
			}
		}()
	}
	defer workers.Wait()
	defer close(work)

	// The first round is spread over the jitter window rather than fired at
	// once, so that a restart does not probe every connection in the same
	// instant.
	start := time.Now()
	q := make(queue, 0, len(g.list))
	for _, e := range g.list {
		q = append(q, &item{e: e, due: start.Add(time.Duration(rand.Float64() * g.o.RefreshJitter * float64(interval)))})
	}
	heap.Init(&q)
	timer := time.NewTimer(time.Until(q[0].due))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		for !q[0].due.After(time.Now()) {
			it := q[0]
			select {
			case work <- it.e:
			case <-ctx.Done():
				return nil
			}
			it.due = time.Now().Add(g.jittered(interval))
			heap.Fix(&q, 0)
		}
		timer.Reset(time.Until(q[0].due))
	}
}

// jittered moves d by up to ±RefreshJitter of itself.
func (g *Gate) jittered(d time.Duration) time.Duration {
	f := 1 + g.o.RefreshJitter*(2*rand.Float64()-1)
	return max(time.Duration(f*float64(d)), time.Millisecond)
}

// backgroundRefresh refreshes one connection unless its evidence is young
// anyway (a caller just gathered it) or another replica holds the refresh
// lock. A failing Locker does not stop the refresh: stale health statuses are
// worse than a replica probing once more, and the budget still holds.
func (g *Gate) backgroundRefresh(ctx context.Context, e *entry) {
	_, ended, _ := g.activity(ctx, e.id)
	e.mu.Lock()
	now := g.now()
	g.forgetOutdatedLocked(e, ended, now)
	young := e.ev.Complete() && now.Sub(e.ev.CheckedAt) < g.o.RefreshInterval/2
	e.mu.Unlock()
	if young {
		return
	}
	if l := g.o.Locker; l != nil {
		// Held for half an interval: long enough to cover the gathering,
		// short enough to have expired by this replica's next round.
		ok, err := l.TryLock(ctx, "refresh:"+e.id, g.o.RefreshInterval/2)
		switch {
		case err != nil:
			g.log.Warn("gate: refresh lock failed; refreshing anyway", "connection", e.id, "err", err)
		case !ok:
			return
		}
	}
	if _, err := g.refresh(ctx, e); err != nil && ctx.Err() == nil {
		g.log.Debug("gate: background refresh", "connection", e.id, "err", err)
		return
	}
	if f := g.o.OnBackgroundRefresh; f != nil {
		e.mu.Lock()
		ev := e.ev
		e.mu.Unlock()
		if ev != nil {
			f(ctx, ev)
		}
	}
}

type item struct {
	e   *entry
	due time.Time
}

// queue is a min-heap of items by due time.
type queue []*item

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q queue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)        { *q = append(*q, x.(*item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return it
}
