//go:build netns

package netns

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// strayMachine matches no profile.
var strayMachine = Machine{Name: "stray", MAC: "52:54:00:12:34:52", Tap: tapPrefix + "stray", Firmware: BIOS}

// noProfileLine starts what a member's iPXE script echoes to a machine no profile matches.
const noProfileLine = "no Edge Factory profile matches"

// TestNetnsNetbootMembers: issue 15's lab. On the bridge: dnsmasq as the site's plain DHCP server (addresses only,
// no boot options) and two members with --netboot-interface eth0 (proxyDHCP, TFTP, the iPXE script). A BIOS, a
// UEFI (OVMF PXE) and a UEFI HTTP Boot guest each boot the synthetic kernel with the command line of the profile
// matching their MAC; a fourth guest matching nothing shows the "no profile" line and boots no kernel. Exactly one
// member answers each guest (counted in the members' logs, and the answered-requests metric agrees). With that
// member killed, the BIOS guest's next boot is answered by the other.
func TestNetnsNetbootMembers(t *testing.T) {
	parts := requireNetbootLab(t)
	requireNetbootFlag(t)

	lab := NewLab(t, 2)
	machines := []Machine{biosMachine, uefiMachine, httpMachine, strayMachine}

	for _, m := range machines {
		lab.AddTap(m.Name)
	}

	dhcp := startDNSMasq(t, lab, "dnsmasq (plain DHCP)", plainDHCP(t.TempDir()))
	c, files := startNetbootMembers(t, lab, parts)
	accel := labAccel(t, files)

	for _, m := range []Machine{biosMachine, uefiMachine, httpMachine} {
		c.putProfile(t, 1, m.Name, m.MAC, files.schematic, "edgefactory.test="+m.Name)
	}

	t.Run("boot", func(t *testing.T) {
		for _, m := range machines {
			t.Run(m.Name, func(t *testing.T) {
				t.Parallel()

				if m == strayMachine {
					b := bootMachine(t, dhcp, m, accel, noProfileLine)
					require.Equal(t, noProfileLine, b.res.Stop, "the stray machine's console never said so (%v):\n%s",
						b.err, readableTail(b.res.Console))
					assert.True(t, b.res.KernelAt.IsZero(), "a machine without a profile booted a kernel")
					assert.NotContains(t, b.res.Console, synthetic.BootMarker)

					return
				}

				bootMachine(t, dhcp, m, accel).requireBooted(t, labArg, "edgefactory.test="+m.Name)
			})
		}
	})

	answers := c.netbootAnswers(t)
	total := 0

	for _, m := range machines {
		by := answers[strings.ToLower(m.MAC)]
		t.Logf("%s (%s) answered by %v", m.Name, m.MAC, by)
		assert.Len(t, by, 1, "%s: want exactly one member answering, got %v", m.Name, by)

		for _, n := range by {
			total += n
		}
	}

	answered := 0.0
	for i := 1; i <= lab.n; i++ {
		answered += c.metric(t, i, "edgefactory_netboot_dhcp_requests_total", `result="answered"`)
	}

	assert.InDelta(t, float64(total), answered, 0, "answered DHCP requests: the members' logs against their metric")

	silent := 0.0
	for i := 1; i <= lab.n; i++ {
		silent += c.metric(t, i, "edgefactory_netboot_dhcp_requests_total", `result="not_responder"`)
	}

	assert.Positive(t, silent, "no member counted a request it left to the other: did both hear the guests?")

	t.Run("failover", func(t *testing.T) {
		responder := only(answers[strings.ToLower(biosMachine.MAC)])
		require.NotZero(t, responder, "no single member answered the BIOS guest")

		survivor := 3 - responder
		require.NoError(t, c.procs[responder].Kill())
		t.Logf("killed %s, the BIOS guest's responder", NodeNS(responder))

		require.Eventually(t, func() bool {
			st, ok := c.status(survivor)

			return ok && slices.Equal(st.alive(), []string{NodeNS(survivor)})
		}, 60*time.Second, 500*time.Millisecond, "%s never saw %s gone", NodeNS(survivor), NodeNS(responder))

		before := c.netbootAnswers(t)[strings.ToLower(biosMachine.MAC)]

		bootMachine(t, dhcp, biosMachine, accel).requireBooted(t, labArg, "edgefactory.test="+biosMachine.Name)

		after := c.netbootAnswers(t)[strings.ToLower(biosMachine.MAC)]
		assert.Equal(t, before[responder], after[responder], "the killed member answered (it is dead)")
		assert.Greater(t, after[survivor], before[survivor], "%s did not answer the BIOS guest's next boot",
			NodeNS(survivor))
	})
}

// requireNetbootFlag fails the test when the binary has no network boot (issue 15's member side): the lab is the
// proof of that feature, so a build without it is a failure, not a reason to skip.
func requireNetbootFlag(t testing.TB) {
	t.Helper()

	out, _ := exec.Command(e2e.Binary(t), "serve", "--help").CombinedOutput()
	if !strings.Contains(string(out), "--netboot-interface") {
		t.Fatalf("edgefactory serve has no --netboot-interface flag: this build has no network boot "+
			"(members answering proxyDHCP and TFTP), so the lab's member tests cannot run; `serve --help` says:\n%s",
			tail(string(out), 40))
	}
}

// startNetbootMembers starts two members with network boot on their eth0 (JSON logs, so the test can count their
// answers) and the synthetic upstream, creates the suite's schematic and has each member serve its kernel and
// initramfs once, so that either can boot a machine alone later (one of two members down leaves no Raft quorum
// for building). files holds the kernel and initramfs (member 1's bytes) for the accelerator probe.
func startNetbootMembers(t testing.TB, lab *Lab, parts string) (*cluster, bootFiles) {
	t.Helper()

	c := startCluster(t, lab, parts, "--netboot-interface", "eth0", "--ipxe-dir", ipxeDir(), "--log-format", "json")

	require.Eventually(t, func() bool { ok, _ := c.converged(); return ok }, 60*time.Second, 200*time.Millisecond,
		"the members never converged")

	r := do(t, http.MethodPost, c.urls[1]+"/schematics", labSchematic)
	require.Contains(t, []int{http.StatusCreated, http.StatusOK}, r.status, "POST /schematics: %s", r)

	var created struct {
		ID string `json:"id"`
	}

	require.NoError(t, json.Unmarshal(r.body, &created), "%s", r.body)

	dir := t.TempDir()
	files := bootFiles{root: dir, schematic: created.ID,
		kernel: filepath.Join(dir, "kernel-amd64"), initramfs: filepath.Join(dir, "initramfs-amd64.xz")}

	for i := lab.n; i >= 1; i-- {
		base := c.urls[i] + "/image/" + created.ID + "/" + labVersion
		fetch(t, base+"/kernel-amd64", files.kernel)
		fetch(t, base+"/initramfs-amd64.xz", files.initramfs)
	}

	return c, files
}

// putProfile stores profile name on member i: machines with mac boot the schematic at labVersion with the lab's
// console and args.
func (c *cluster) putProfile(t testing.TB, i int, name, mac, schematic string, args ...string) {
	t.Helper()

	body, err := json.Marshal(map[string]any{
		"selectors":       map[string]string{"mac": mac},
		"schematic":       schematic,
		"version":         labVersion,
		"platform":        "metal",
		"secureboot":      false,
		"extraKernelArgs": append([]string{"console=ttyS0"}, args...),
	})
	require.NoError(t, err)

	r := do(t, http.MethodPut, c.urls[i]+"/machines/profiles/"+name, string(body))
	require.Contains(t, []int{http.StatusOK, http.StatusCreated}, r.status, "PUT /machines/profiles/%s: %s", name, r)
}

// answerMessages are the log messages of a member's answered DHCP exchange: the contract's, and what the first
// implementation (frontends/netboot) writes.
var answerMessages = []string{"netboot answer", "netboot: answered"}

// netbootAnswers counts the answer lines in each member's log: MAC (lower case) → member index → lines.
func (c *cluster) netbootAnswers(t testing.TB) map[string]map[int]int {
	t.Helper()

	counts := map[string]map[int]int{}

	for i, logs := range c.logs {
		for _, line := range strings.Split(logs.String(), "\n") {
			if !strings.Contains(line, "netboot") {
				continue
			}

			var rec struct {
				Msg string `json:"msg"`
				MAC string `json:"mac"`
			}

			if json.Unmarshal([]byte(line), &rec) != nil || !slices.Contains(answerMessages, rec.Msg) {
				continue
			}

			mac := strings.ToLower(rec.MAC)
			if counts[mac] == nil {
				counts[mac] = map[int]int{}
			}

			counts[mac][i]++
		}
	}

	return counts
}

// only is the one member in by, or 0 when there are none or several.
func only(by map[int]int) int {
	if len(by) != 1 {
		return 0
	}

	for i := range by {
		return i
	}

	return 0
}
