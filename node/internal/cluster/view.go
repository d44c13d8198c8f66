package cluster

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/edgefactory/edgefactory/ring"
)

// view is this node's picture of the cluster: the alive members with their advertised URLs, and the ring placing
// keys over them. It is rebuilt from membership whenever membership changes.
type view struct {
	self string
	ring atomic.Pointer[ring.Ring]

	mu    sync.RWMutex
	urls  map[string]string
	peers map[string]string // name → peer API base URL
}

func newView(self, selfURL, selfPeer string, r *ring.Ring) *view {
	v := &view{self: self}
	v.ring.Store(r)
	v.set(map[string]string{self: selfURL}, map[string]string{self: selfPeer})

	return v
}

// set replaces the alive members (name → URL, name → peer API URL) and reports whether the ring changed.
func (v *view) set(urls, peers map[string]string) bool {
	v.mu.Lock()
	v.urls, v.peers = maps.Clone(urls), maps.Clone(peers)
	v.mu.Unlock()

	return v.ring.Load().Set(slices.Collect(maps.Keys(urls)))
}

// setPartitions rebuilds the ring with the cluster's partition count (kept in Raft since the cluster was created)
// when it differs from this node's; it reports whether it did.
func (v *view) setPartitions(n int) bool {
	old := v.ring.Load()
	if old.Config().PartitionCount == n {
		return false
	}

	cfg := old.Config()
	cfg.PartitionCount = n
	r := ring.New(cfg)
	r.Set(old.Members())
	v.ring.Store(r)

	return true
}

func (v *view) Self() string                       { return v.self }
func (v *view) Owner(key string) (string, bool)    { return v.ring.Load().Owner(key) }
func (v *view) Holders(key string, n int) []string { return v.ring.Load().Holders(key, n) }
func (v *view) RingVersion() uint64                { return v.ring.Load().Version() }

func (v *view) Members() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()

	return slices.Sorted(maps.Keys(v.urls))
}

func (v *view) PeerURL(name string) (string, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()

	u, ok := v.peers[name]

	return u, ok
}

func (v *view) URL(name string) (string, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()

	u, ok := v.urls[name]

	return u, ok
}
