package server

import (
	"context"
	"fmt"
	"sync"
)

// UsageReporter is implemented by stores that can measure how many bytes
// they hold; Config.MaxSize needs it to seed the quota at startup.
type UsageReporter interface {
	Usage(ctx context.Context) (int64, error)
}

// quota is the global --max-size accounting over the whole store. It lives
// in memory only (never in a repository directory, hazard H08); the usage
// is re-measured at every start.
type quota struct {
	max int64

	mu   sync.Mutex // guards used
	used int64
}

func newQuota(ctx context.Context, store Store, max int64) (*quota, error) {
	ur, ok := store.(UsageReporter)
	if !ok {
		return nil, fmt.Errorf("max size: store %T cannot report its usage", store)
	}
	used, err := ur.Usage(ctx)
	if err != nil {
		return nil, fmt.Errorf("max size: measure usage: %w", err)
	}
	return &quota{max: max, used: used}, nil
}

// reserve claims n bytes, or reports false if that would exceed the quota.
func (q *quota) reserve(n int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n < 0 || q.used+n > q.max || q.used+n < q.used {
		return false
	}
	q.used += n
	return true
}

// release returns n bytes (a failed upload or a deleted file).
func (q *quota) release(n int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.used -= n
	if q.used < 0 {
		q.used = 0
	}
}

// usage returns the bytes currently accounted.
func (q *quota) usage() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.used
}

// keyedMutex serialises operations on one key (an object) without one big
// lock; entries are dropped when unused.
type keyedMutex struct {
	mu sync.Mutex // guards m
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex // held by the goroutine working on the key
	refs int        // goroutines holding or waiting for mu; guarded by keyedMutex.mu
}

func newKeyedMutex() *keyedMutex { return &keyedMutex{m: make(map[string]*keyedEntry)} }

// lock locks key and returns the unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()

	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
