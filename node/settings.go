package node

import (
	settingsapi "github.com/edgefactory/edgefactory/frontends/settings"
)

// applySettings moves this member with the cluster settings in force: the catalog policy and interval (the leader
// runs a round at once), the cache's budget and free-space floor. Replicas are read at every placement.
func (n *Node) applySettings(s settingsapi.Settings) {
	n.catalog.SetPolicy(s.MinVersion, s.BrokenVersions, s.Interval())

	select {
	case n.settingsChanged <- struct{}{}:
	default: // a round is due already
	}

	if err := n.cas.SetLimits(s.CacheBudget, s.LowSpaceWatermark); err != nil {
		n.log.Error("cluster settings: cache limits not applied", "error", err)
	}
}
