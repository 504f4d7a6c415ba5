package store

import (
	"context"
	"sync"
	"testing"
)

// closeOnce lets a test close a store itself and still have the cleanup
// close it, for stores the test leaves open.
type closeOnce struct {
	Store
	once sync.Once
	err  error
}

func (c *closeOnce) Close() error {
	c.once.Do(func() { c.err = c.Store.Close() })
	return c.err
}

// opener turns tryOpen into testDB.open.
func opener(tryOpen func(ctx context.Context) (Store, error)) func(t *testing.T) Store {
	return func(t *testing.T) Store {
		t.Helper()
		s, err := tryOpen(t.Context())
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		c := &closeOnce{Store: s}
		t.Cleanup(func() {
			if err := c.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		})
		return c
	}
}
