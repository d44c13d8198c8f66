package qemu

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/synthetic"
)

func TestConsoleStopLines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		stop   string
	}{
		{"poweroff marker", []string{"noise\r\n", synthetic.BootMarker + "\r\ncmdline: x\r\n", synthetic.PoweroffMarker + "\r\n"}, synthetic.PoweroffMarker},
		{"marker split across writes", []string{"abc " + synthetic.PoweroffMarker[:10], synthetic.PoweroffMarker[10:] + "\n"}, synthetic.PoweroffMarker},
		{"KVM failure", []string{"KVM internal error. Suberror: 1\nemulation failure\n"}, "KVM internal error"},
		{"SeaBIOS gives up", []string{"Booting from Hard Disk...\nNo bootable device.  Retrying in 60 seconds.\n"}, "No bootable device"},
		{"still booting", []string{synthetic.BootMarker + "\n", "cmdline: y\n"}, ""},
		{"a caller's stop line", []string{"no Edge Factory profile", " matches this machine\n"}, "no Edge Factory profile matches"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConsole("no Edge Factory profile matches")
			for _, w := range tc.writes {
				_, err := c.Write([]byte(w))
				require.NoError(t, err)
			}

			assert.Equal(t, tc.stop, c.reason())
			assert.Equal(t, strings.Join(tc.writes, ""), c.String())

			select {
			case <-c.stopped:
				assert.NotEmpty(t, tc.stop, "stopped without a stop line")
			default:
				assert.Empty(t, tc.stop, "a stop line did not stop the run")
			}
		})
	}
}

func TestReadable(t *testing.T) {
	raw := "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r\nBooting\x1b[01;01H from DVD\x00\r\n"
	assert.Equal(t, "SeaBIOS (version 1.16)\nBooting from DVD\n", Readable(raw, 1000))

	cut := Readable(strings.Repeat("a", 100)+"tail", 4)
	assert.True(t, strings.HasSuffix(cut, "]tail"), cut)
	assert.Contains(t, cut, "100 bytes before")
}

func TestConsoleKernelAt(t *testing.T) {
	c := newConsole()
	_, err := c.Write([]byte("iPXE booting\r\nLinux ver"))
	require.NoError(t, err)
	assert.True(t, c.kernelAt().IsZero(), "half a marker is no kernel")

	before := time.Now()
	_, err = c.Write([]byte("sion 6.12.0 (gcc)\r\n"))
	require.NoError(t, err)
	assert.False(t, c.kernelAt().Before(before), "the kernel line's time is when it completed")

	first := c.kernelAt()
	_, err = c.Write([]byte("Linux version again\n"))
	require.NoError(t, err)
	assert.Equal(t, first, c.kernelAt(), "only the first line counts")
}
