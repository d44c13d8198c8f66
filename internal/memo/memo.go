// Package memo remembers values derived from immutable inputs (a schematic by its ID, which is a content hash; a
// command line by its recipe key; a rendered iPXE script by what it says), so hot paths skip recomputing them.
package memo

import "sync"

// Memo is a map bounded crudely: when full it starts over, which costs only recomputation. The zero value is not
// usable; use New.
type Memo[K comparable, V any] struct {
	mu  sync.RWMutex
	max int
	m   map[K]V
}

// New returns a memo that holds at most max values.
func New[K comparable, V any](max int) *Memo[K, V] { return &Memo[K, V]{max: max} }

// Get returns the value remembered for key.
func (c *Memo[K, V]) Get(key K) (V, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	v, ok := c.m[key]

	return v, ok
}

// Put remembers value for key.
func (c *Memo[K, V]) Put(key K, value V) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[K]V)
	}

	c.m[key] = value
}
