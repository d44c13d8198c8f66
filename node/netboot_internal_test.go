package node

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNetbootOrder: every member computes the same order for a machine whatever order it lists the members in, the
// machines spread over the members, and a member's departure changes the first responder only of the machines it
// answered.
func TestNetbootOrder(t *testing.T) {
	members := []string{"m1", "m2", "m3"}
	first := map[string]int{}
	moved := 0

	for i := range 3000 {
		mac := net.HardwareAddr{0x52, 0x54, 0x00, byte(i >> 16), byte(i >> 8), byte(i)}

		order := netbootOrder(members, mac)
		require.Equal(t, order, netbootOrder([]string{"m3", "m1", "m2"}, mac))
		require.ElementsMatch(t, members, order)
		first[order[0]]++

		without := netbootOrder([]string{"m1", "m3"}, mac)
		if order[0] != "m2" {
			if without[0] != order[0] {
				moved++
			}
		} else {
			assert.Equal(t, order[1], without[0], "the next in the machine's order takes over")
		}
	}

	assert.Zero(t, moved, "machines m2 did not answer keep their responder when m2 goes")

	for _, m := range members {
		assert.InDelta(t, 1000, first[m], 150, "%s answers about a third of the machines: %v", m, first)
	}
}
