package auth

import (
	"sync"
	"time"
)

// probeLimiter is a token bucket per (identity, connection): up to perMinute
// probes at once, refilled at perMinute per minute.
//
// Memory is bounded without ever resetting a bucket that is still draining,
// since a reset would hand out a fresh burst of SF logins: a bucket idle for
// refillAll is full again, i.e. indistinguishable from a new one, and only
// such buckets are dropped. Connection names come from requests before
// validation, so an identity could invent names; maxPerIdentity caps the
// buckets one identity holds (its new keys wait until one refills), and
// maxBuckets caps everyone together.
type probeLimiter struct {
	perMinute int
	rate      float64       // tokens per second
	refillAll time.Duration // empty to full

	mu         sync.Mutex
	buckets    map[limitKey]*bucket
	perID      map[string]int
	lastPurged time.Time
}

type limitKey struct {
	identity string // method and name: a token and a certificate may share a name
	conn     string
}

type bucket struct {
	tokens float64
	last   time.Time
}

const (
	maxBuckets     = 1 << 16
	maxPerIdentity = 1 << 10
)

func newProbeLimiter(perMinute int) *probeLimiter {
	return &probeLimiter{
		perMinute: perMinute,
		rate:      float64(perMinute) / 60,
		refillAll: time.Minute,
		buckets:   map[limitKey]*bucket{},
		perID:     map[string]int{},
	}
}

// take spends one token for (identity, conn) at now; when none is left it
// returns how long until one is.
func (l *probeLimiter) take(identity, conn string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Purge at most once per refill period so a flood of new keys cannot
	// make every call scan the map.
	if now.Sub(l.lastPurged) >= l.refillAll || now.Before(l.lastPurged) {
		l.purge(now)
	}
	k := limitKey{identity: identity, conn: conn}
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= maxBuckets || l.perID[identity] >= maxPerIdentity {
			l.purge(now)
		}
		if len(l.buckets) >= maxBuckets || l.perID[identity] >= maxPerIdentity {
			// Every bucket is still draining; the oldest is full again at
			// the latest one refill period from now.
			return false, l.refillAll
		}
		b = &bucket{tokens: float64(l.perMinute), last: now}
		l.buckets[k] = b
		l.perID[identity]++
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(float64(l.perMinute), b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	// Round up so that a caller retrying exactly then finds a whole token.
	return false, wait.Truncate(time.Millisecond) + time.Millisecond
}

// purge drops buckets that are full again.
func (l *probeLimiter) purge(now time.Time) {
	l.lastPurged = now
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.refillAll {
			delete(l.buckets, k)
			if l.perID[k.identity]--; l.perID[k.identity] <= 0 {
				delete(l.perID, k.identity)
			}
		}
	}
}

func (l *probeLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
