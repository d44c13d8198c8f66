package node_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUIPages: the cluster page of any member lists the three members and the leader, shows an ISO's build in
// flight with its stage while it runs (the member asked is not the builder), and the final page's badge for that
// ISO says building, then cached; the machines page lists a profile and a boot.
func TestUIPages(t *testing.T) {
	c := startCluster(t, realUpstream(t), 3)
	leader := c.steadyLeader(t)
	id := leader.createSchematic(t, `customization: {extraKernelArgs: [ui-pages]}`)

	const version, path = "v1.13.0", "metal-amd64.iso"

	st, resp := leader.assetStatus(t, id, version, path)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)

	owner := c.byName(t, st.Member)
	viewer := c.other(t, owner.name)
	badge := "/ui/asset-badge?schematic=" + id + "&version=" + version + "&path=" + path

	page := viewer.do(t, "GET", "/ui/cluster", "", nil)
	require.Equal(t, http.StatusOK, page.StatusCode)

	for _, m := range c.live() {
		assert.Contains(t, page.Body, `data-member="`+m.name+`"`)
	}

	assert.Regexp(t, `id="leader">`+leader.name+`<`, page.Body)
	assert.Contains(t, page.Body, `id="no-builds"`)
	assert.Contains(t, viewer.do(t, "GET", badge, "", nil).Body, "not built yet")

	done := make(chan response, 1)

	go func() { done <- viewer.do(t, "GET", "/image/"+id+"/"+version+"/"+path, "", nil) }()

	stageRow := regexp.MustCompile(`<td class="stage">([a-z ]+)</td>`)

	var stages, badges []string

	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); {
		if m := stageRow.FindStringSubmatch(viewer.do(t, "GET", "/ui/cluster", "", nil).Body); m != nil {
			stages = append(stages, m[1])
		}

		b := viewer.do(t, "GET", badge, "", nil).Body
		badges = append(badges, b)

		if strings.Contains(b, "cached") {
			break
		}

		time.Sleep(50 * time.Millisecond)
	}

	require.NotEmpty(t, stages, "the cluster page never showed the build in flight")
	t.Logf("stages seen on the cluster page: %v", compact(stages))

	building := false

	for _, b := range badges {
		building = building || strings.Contains(b, "building on "+owner.name+": ")
	}

	assert.True(t, building, "the badge never said the ISO was building on %s", owner.name)
	assert.Contains(t, badges[len(badges)-1], "cached")
	assert.NotContains(t, badges[len(badges)-1], "hx-get", "a cached asset's badge stops polling")
	require.Equal(t, http.StatusOK, (<-done).StatusCode)

	require.Equal(t, http.StatusCreated, viewer.do(t, "PUT", "/machines/profiles/rack1", `{"selectors": {"labels": {"rack": "r1"}},
		"schematic": "`+id+`", "version": "v1.13.0"}`, nil).StatusCode)
	viewer.do(t, "GET", "/pxe/boot.ipxe?mac=52:54:00:00:00:01&arch=x86_64&rack=r1", "", nil)

	machines := owner.do(t, "GET", "/ui/machines", "", nil)
	require.Equal(t, http.StatusOK, machines.StatusCode)
	assert.Contains(t, machines.Body, "label rack=r1")
	assert.Contains(t, machines.Body, "52:54:00:00:00:01", "boots seen by another member are listed")
}

// compact drops repeats that follow each other.
func compact(s []string) []string {
	var out []string

	for _, v := range s {
		if len(out) == 0 || out[len(out)-1] != v {
			out = append(out, v)
		}
	}

	return out
}
