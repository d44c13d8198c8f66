package node

import "sync"

// memo remembers values derived from immutable inputs — a schematic by its ID (a content hash), a command line by
// its recipe key — so hot paths like PXE scripts skip decoding and the CAS. It is bounded crudely: when full it
// starts over, which costs only recomputation.
type memo[V any] struct {
	mu  sync.RWMutex
	max int
	m   map[string]V
}

func newMemo[V any](max int) *memo[V] { return &memo[V]{max: max} }

func (c *memo[V]) get(key string) (V, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	v, ok := c.m[key]

	return v, ok
}

func (c *memo[V]) put(key string, value V) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]V)
	}

	c.m[key] = value
}

// reset forgets everything (the inputs changed).
func (c *memo[V]) reset() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}
