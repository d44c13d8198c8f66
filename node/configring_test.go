package node

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/ring"
)

// TestConfigRingPartitions: a partition count the ring cannot take is an operator's error, not a silent fallback
// to the ring's default.
func TestConfigRingPartitions(t *testing.T) {
	for _, tc := range []struct {
		partitions int
		err        string
	}{
		{271, ""},
		{1, ""},
		{ring.MaxPartitionCount, ""},
		{ring.MaxPartitionCount + 1, "--ring-partitions: ring: partition count"},
		{0, "ring partitions must be at least 1"},
	} {
		t.Run(strconv.Itoa(tc.partitions), func(t *testing.T) {
			cfg := Defaults()
			cfg.DataDir = t.TempDir()
			cfg.RingPartitions = tc.partitions
			cfg.InputVerifyOff = true // not what this test is about
			err := cfg.validate()
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
}
