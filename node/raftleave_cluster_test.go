package node_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node"
)

// TestClusterLeaveKeepsQuorum: of three voters one crashes, and within the dead-member grace another is restarted
// (a graceful stop, as on SIGTERM, then a start on its data). Removed from the Raft configuration on its way out,
// it would leave two voters of which one is dead: no leader until the crashed one returns, and the restarted node
// a newcomer nobody can add. It stays a voter instead, and once it is back the cluster has a leader and takes
// writes again. The case holds whether the stopping node follows or leads.
func TestClusterLeaveKeepsQuorum(t *testing.T) {
	for _, tc := range []struct {
		name  string
		leads bool // the node that stops is the leader
	}{
		{name: "a follower restarts", leads: false},
		{name: "the leader restarts", leads: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, upstream(t), 3)
			leader := c.leader(t)
			crashed := c.other(t, leader.name)
			restarted, other := leader, c.other(t, leader.name, crashed.name)

			if !tc.leads {
				restarted, other = other, leader
			}

			c.kill(crashed)
			require.True(t, waitFor(30*time.Second, func() bool {
				return memberState(restarted, crashed.name) == "dead" && memberState(other, crashed.name) == "dead"
			}), "gossip sees %s dead", crashed.name)
			// The two left still commit, so the crashed node falls behind (a leadership transfer passes it over).
			leader.createSchematic(t, `customization: {extraKernelArgs: [after-the-crash]}`)

			c.stop(restarted)
			assert.Contains(t, other.Status().Voters, restarted.name,
				"a member whose removal would cost the quorum stays a voter")

			back := c.restart(t, restarted, func(*node.Config) {})

			var last string

			recovered := waitFor(60*time.Second, func() bool {
				for _, m := range []*member{back, other} {
					if m.Status().Leader == "" {
						last = m.name + " sees no leader"

						return false
					}

					resp := m.do(t, "POST", "/schematics", `customization: {extraKernelArgs: [leave-keeps-quorum]}`, nil)
					if resp.StatusCode != http.StatusCreated {
						last = m.name + ": " + resp.Body

						return false
					}
				}

				return true
			})
			require.True(t, recovered, "once %s is back, the cluster elects a leader and takes writes (last: %s)",
				restarted.name, last)
		})
	}
}

// TestClusterLeaveRemovesMember: in a healthy three-node cluster a follower that stops gracefully is taken out of
// the Raft configuration at once, long before the dead-member grace; then the leader stops gracefully, hands its
// leadership over and is removed too, and the last member leads alone.
func TestClusterLeaveRemovesMember(t *testing.T) {
	c := startCluster(t, upstream(t), 3)

	for _, leads := range []bool{false, true} {
		leaver := c.leader(t)
		if !leads {
			leaver = c.other(t, leaver.name)
		}

		c.stop(leaver)

		var last []string

		removed := waitFor(30*time.Second, func() bool {
			for _, m := range c.live() {
				st := m.Status()
				if last = st.Voters; st.Leader == "" || slices.Contains(st.Voters, leaver.name) {
					return false
				}
			}

			return true
		})
		require.True(t, removed, "the stopped member %s (leader: %v) is removed; voters: %v", leaver.name, leads, last)
		c.leader(t).createSchematic(t, `customization: {extraKernelArgs: [after-a-leave]}`)
	}
}

// memberState is the gossip state of member name as m sees it ("" when it does not know it).
func memberState(m *member, name string) string { return memberOf(m.Status(), name).State }
