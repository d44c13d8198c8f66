package node

import (
	"maps"
	"slices"
	"sync"

	"github.com/edgefactory/edgefactory/ring"
)

// view is this node's picture of the cluster: the alive members with their advertised URLs, and the ring placing
// keys over them. It is rebuilt from membership whenever membership changes.
type view struct {
	self string
	ring *ring.Ring

	mu   sync.RWMutex
	urls map[string]string
}

func newView(self, selfURL string, r *ring.Ring) *view {
	v := &view{self: self, ring: r}
	v.set(map[string]string{self: selfURL})

	return v
}

// set replaces the alive members (name → URL) and reports whether the ring changed.
func (v *view) set(urls map[string]string) bool {
	v.mu.Lock()
	v.urls = maps.Clone(urls)
	v.mu.Unlock()

	return v.ring.Set(slices.Collect(maps.Keys(urls)))
}

func (v *view) Self() string                       { return v.self }
func (v *view) Owner(key string) (string, bool)    { return v.ring.Owner(key) }
func (v *view) Holders(key string, n int) []string { return v.ring.Holders(key, n) }
func (v *view) RingVersion() uint64                { return v.ring.Version() }

func (v *view) Members() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()

	return slices.Sorted(maps.Keys(v.urls))
}

func (v *view) URL(name string) (string, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()

	u, ok := v.urls[name]

	return u, ok
}

// memberStates lists the members as gossip sees them (this view's alive members until gossip runs).
func (n *Node) memberStates() []MemberStatus {
	var out []MemberStatus

	for _, name := range n.cluster.Members() {
		url, _ := n.cluster.URL(name)
		out = append(out, MemberStatus{Name: name, URL: url, State: "alive"})
	}

	return out
}
