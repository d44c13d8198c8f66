package buildprofile

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/hosttools"
)

func TestChoose(t *testing.T) {
	amd := func(name string) Member { return Member{Name: name, Profile: "bbbb", Arch: "amd64"} }
	arm := func(name string) Member { return Member{Name: name, Profile: "aaaa", Arch: "arm64"} }
	cache := func(m Member) Member { m.Role = RoleCache; return m }
	degraded := func(m Member) Member { m.Degraded = []string{"mksquashfs"}; return m }

	for _, tc := range []struct {
		name    string
		setting string
		members []Member
		want    string
	}{
		{"none", "", nil, ""},
		{"most shared", "", []Member{amd("a"), arm("b"), amd("c")}, "bbbb"},
		{"tie: lowest ID", "", []Member{amd("a"), arm("b")}, "aaaa"},
		{"cache members do not count", "", []Member{amd("a"), cache(arm("b")), cache(arm("c"))}, "bbbb"},
		{"degraded members do not count", "", []Member{amd("a"), degraded(arm("b")), degraded(arm("c"))}, "bbbb"},
		{"no candidate: most shared of all", "", []Member{cache(amd("a")), cache(arm("b")), cache(arm("c"))}, "aaaa"},
		{"setting wins", "bbbb", []Member{amd("a"), arm("b"), arm("c")}, "bbbb"},
		{"setting no live member has", "cccc", []Member{amd("a")}, "cccc"},
		{"older member without profile", "", []Member{{Name: "old"}, arm("b")}, "aaaa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Choose(tc.setting, tc.members))
		})
	}
}

func TestWhyNot(t *testing.T) {
	m := Member{Name: "a", Profile: "bbbb"}
	assert.Empty(t, WhyNot(m, "bbbb", 3))
	assert.Contains(t, WhyNot(m, "aaaa", 3), "build profile bbbb, the cluster builds with aaaa")

	m.Role = RoleCache
	assert.Contains(t, WhyNot(m, "bbbb", 3), "role cache")
	assert.Contains(t, WhyNot(m, "bbbb", 1), "role cache", "a cache member alone does not build either")

	m.Role, m.Degraded = RoleBuild, []string{"mksquashfs"}
	assert.Contains(t, WhyNot(m, "bbbb", 3), "degraded host tools (mksquashfs)")
	assert.Empty(t, WhyNot(m, "bbbb", 1), "a member alone builds with degraded tools: nothing else could")
}

func TestID(t *testing.T) {
	report := hosttools.Report{Tools: []hosttools.ToolStatus{
		{Tool: hosttools.Tool{Name: "mksquashfs"}, Status: hosttools.StatusOK, Version: "4.6.1", Path: "/a/mksquashfs"},
		{Tool: hosttools.Tool{Name: "busybox"}, Status: hosttools.StatusOK, Version: "1.35"},
	}}
	p := New("v1", "builder/1", "amd64", report)
	require.Len(t, p.Tools, 1, "busybox builds nothing")
	assert.Len(t, p.ID(), 16)
	assert.Empty(t, p.Degraded())

	moved := report
	moved.Tools = append([]hosttools.ToolStatus{}, report.Tools...)
	moved.Tools[0].Path = "/b/mksquashfs"
	assert.Equal(t, p.ID(), New("v1", "builder/1", "amd64", moved).ID(), "where a tool is does not matter")

	assert.NotEqual(t, p.ID(), New("v1", "builder/1", "arm64", report).ID())
	assert.NotEqual(t, p.ID(), New("v2", "builder/1", "amd64", report).ID())

	older := moved
	older.Tools[0].Version, older.Tools[0].Degraded = "4.5.1", true
	q := New("v1", "builder/1", "amd64", older)
	assert.NotEqual(t, p.ID(), q.ID())
	assert.Equal(t, []string{"mksquashfs"}, q.Degraded())

	_, err := ParseRole("builder")
	require.ErrorContains(t, err, `unknown role "builder"`)
	role, err := ParseRole("")
	require.NoError(t, err)
	assert.Equal(t, RoleBuild, role)
}
