package cluster

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/edgefactory/edgefactory/ring"
)

// view is this node's picture of the cluster: the alive members with their advertised URLs, the ring placing
// keys over them, and the ring of the members that may build (placement.go). It is rebuilt from membership
// whenever membership changes.
type view struct {
	self string
	ring atomic.Pointer[ring.Ring]
	// builders places builds: the alive members that may build, on a ring of their own.
	builders atomic.Pointer[ring.Ring]

	mu    sync.RWMutex
	urls  map[string]string
	peers map[string]string // name → peer API base URL
	build placement
}

func newView(self, selfURL, selfPeer string, r *ring.Ring) *view {
	v := &view{self: self}
	v.ring.Store(r)
	v.builders.Store(ring.New(r.Config()))
	v.set(map[string]string{self: selfURL}, map[string]string{self: selfPeer}, placement{})

	return v
}

// set replaces the alive members (name → URL, name → peer API URL) and who may build, and reports whether the
// ring of all members changed.
//
// The rings change under v.mu, as the rest of the view does: a ring replaced by setPartitions at the same moment
// would otherwise lose the members set here (the builders' ring left empty until the next change), and a reader
// told who may build (placement, under v.mu) finds them on the builders' ring already.
func (v *view) set(urls, peers map[string]string, build placement) bool {
	v.mu.Lock()
	defer v.mu.Unlock()

	v.urls, v.peers, v.build = maps.Clone(urls), maps.Clone(peers), build
	v.builders.Load().Set(build.builders())

	return v.ring.Load().Set(slices.Collect(maps.Keys(urls)))
}

// setPartitions rebuilds the rings with the cluster's partition count (kept in Raft since the cluster was created)
// when it differs from this node's; it reports whether it did.
func (v *view) setPartitions(n int) bool {
	v.mu.Lock()
	defer v.mu.Unlock()

	old := v.ring.Load()
	if old.Config().PartitionCount == n {
		return false
	}

	cfg := old.Config()
	cfg.PartitionCount = n
	r, b := ring.New(cfg), ring.New(cfg)
	r.Set(old.Members())
	b.Set(v.builders.Load().Members())
	v.ring.Store(r)
	v.builders.Store(b)

	return true
}

// placement returns who may build, as last set.
func (v *view) placement() placement {
	v.mu.RLock()
	defer v.mu.RUnlock()

	return v.build
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
