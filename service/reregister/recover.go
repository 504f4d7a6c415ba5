package reregister

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/certsync/certsync/service/store"
)

// keepLocks renews the operation's leases while it runs. If a lease cannot
// be renewed (another replica took it over after it expired), the run is
// cancelled at its next boundary: two replicas must never act on one
// mapping.
//
// stop ends the renewals and returns once none is in flight, so that a
// release after it is final.
func (m *Manager) keepLocks(ctx context.Context, cancel context.CancelFunc, keys []string, owner string) (lost *atomic.Bool, stop func()) {
	lost = &atomic.Bool{}
	ctx, end := context.WithCancel(ctx)
	stopped := make(chan struct{})
	stop = func() {
		end()
		<-stopped
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(stopped)
		t := time.NewTicker(m.o.LockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, k := range keys {
				ok, holder, err := m.o.Store.AcquireLock(ctx, k, owner, m.o.LockTTL)
				if err != nil {
					// The store is unreachable; keep trying until the lease
					// would have expired anyway.
					m.log.Warn("renew lock", "key", k, "err", err)
					continue
				}
				if !ok {
					m.log.Error("lost the lock of a running operation; stopping it", "key", k, "holder", holder.Owner)
					lost.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	return lost, stop
}

// Recover resumes every unfinished operation whose locks are free: at
// start-up the ones this process left behind, and on other replicas' crash
// the ones whose leases expired. Operations another live replica runs are
// left alone (their leases are held).
func (m *Manager) Recover(ctx context.Context) error {
	ops, err := m.o.Store.ListUnfinished(ctx)
	if err != nil {
		return err
	}
	for _, op := range ops {
		if op.State != store.StateRunning || op.ValidateOnly {
			continue
		}
		m.mu.Lock()
		mine := m.running[op.ID]
		m.mu.Unlock()
		if mine {
			continue
		}
		owner := m.owner(op.ID)
		ok, _, err := m.acquire(ctx, op.LockKeys, owner)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		// Re-read under the lock: the previous runner may have finished it
		// between the listing and the lock.
		fresh, err := m.o.Store.GetOperation(ctx, op.ID)
		if err != nil || fresh.Done() {
			m.release(op.LockKeys, owner)
			continue
		}
		fresh.Notes = append(fresh.Notes, "recovered by "+m.o.Replica+" at "+m.o.Now().UTC().Format(time.RFC3339)+", resuming from the journal")
		// Journal the note now: a manual step resumes by waiting, and
		// re-reads the operation from the store while it waits.
		fresh.UpdateTime = m.o.Now()
		if err := m.o.Store.UpdateOperation(ctx, fresh, nil); err != nil {
			m.release(op.LockKeys, owner)
			if errors.Is(err, store.ErrConflict) {
				continue // changed meanwhile; the next scan looks again
			}
			return err
		}
		m.log.Info("recovering operation", "operation", fresh.ID, "connection", fresh.Connection)
		m.launch(fresh, owner)
	}
	return nil
}

// Run scans for operations to recover every half lease, until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.o.LockTTL / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.ctx.Done():
			return
		case <-t.C:
			if err := m.Recover(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("recovery scan", "err", err)
			}
		}
	}
}
