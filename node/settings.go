package node

import (
	"fmt"

	"github.com/edgefactory/edgefactory/frontends"
	settingsapi "github.com/edgefactory/edgefactory/frontends/settings"
)

// applySettings moves this member with the cluster settings in force: the catalog policy and interval (the leader
// runs a round at once), the cache's budget and free-space floor, the build profile that builds. Replicas are read
// at every placement.
func (n *Node) applySettings(s settingsapi.Settings) {
	n.catalog.SetPolicy(s.MinVersion, s.BrokenVersions, s.Interval())

	select {
	case n.settingsChanged <- struct{}{}:
	default: // a round is due already
	}

	if err := n.cas.SetLimits(s.CacheBudget, s.LowSpaceWatermark); err != nil {
		n.log.Error("cluster settings: cache limits not applied", "error", err)
	}

	n.cluster.SetBuildProfile(s.BuildProfile)
}

// checkSettings refuses a build profile no member ever ran with: with it nobody could plan, let alone build.
func (n *Node) checkSettings(change map[string]any) error {
	id, _ := change["buildProfile"].(string)
	if id == "" {
		return nil
	}

	if _, ok := n.cluster.RecordedProfile(id); ok {
		return nil
	}

	_, _, members := n.cluster.BuildStates()
	for _, m := range members {
		if m.Profile == id {
			return nil
		}
	}

	return frontends.NewError(frontends.ClassInvalid, fmt.Sprintf("buildProfile: no member ever ran with build "+
		"profile %s (GET /cluster lists the members' profiles)", id), nil)
}
