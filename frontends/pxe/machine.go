package pxe

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/edgefactory/edgefactory/frontends"
)

// The network-boot entry point, GET /pxe/boot.ipxe (docs/api.md §11.3). The proxyDHCP hands iPXE this URL; iPXE
// cannot put its own variables into a DHCP file name, so the first answer is a script that chains the same URL again
// with the machine's MAC, UUID, serial, hostname and architecture filled in by iPXE. The second answer boots the
// profile that matches, or tells the console that none does and tries again a minute later: never a silent hang.

// Machine is what a booting machine said about itself on the boot URL.
type Machine struct {
	MAC      net.HardwareAddr
	UUID     string
	Serial   string
	Hostname string
	// Arch is the normalised architecture ("amd64", "arm64").
	Arch string
	// IP is the address the request came from: the machine's own on its segment.
	IP netip.Addr
	// Labels are the other query parameters.
	Labels map[string]string
}

// MachineBoot is the profile a machine boots.
type MachineBoot struct {
	Profile         string
	Schematic       string
	Version         string
	Platform        string
	SecureBoot      bool
	ExtraKernelArgs []string
}

// Machines chooses what a machine boots and hears what it was served.
type Machines interface {
	// ChooseBoot returns the boot of the most specific profile matching m; found is false when none does.
	ChooseBoot(ctx context.Context, m Machine) (b MachineBoot, found bool, err error)
	// Booted is told what m was served: the script's kernel URL, or "no profile".
	Booted(m Machine, b MachineBoot, served string)
}

// RetrySeconds is how long a machine without a profile waits before asking again.
const RetrySeconds = 60

// The query parameters iPXE fills in; every other parameter is a label.
var machineParams = []string{"mac", "uuid", "serial", "hostname", "arch"}

func (p *PXE) machine(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	base := p.machineBase(r)

	if q.Get("mac") == "" {
		p.writeScript(w, chainScript(base, q))

		return
	}

	m, err := parseMachine(r)
	if err != nil {
		frontends.WriteError(w, r, p.Logger, err)

		return
	}

	b, found, err := p.Machines.ChooseBoot(r.Context(), m)
	if err != nil {
		frontends.WriteError(w, r, p.Logger, err)

		return
	}

	if !found {
		p.Machines.Booted(m, b, "no profile")
		p.writeScript(w, noProfileScript(base, m, q))

		return
	}

	path := b.Platform + "-" + m.Arch
	if b.SecureBoot {
		path += "-secureboot"
	}

	boot, err := p.Assets.PXE(r.Context(), b.Schematic, b.Version, path)
	if err != nil {
		frontends.WriteError(w, r, p.Logger, err)

		return
	}

	if len(b.ExtraKernelArgs) > 0 {
		boot.Cmdline = strings.TrimSpace(boot.Cmdline + " " + strings.Join(b.ExtraKernelArgs, " "))
	}

	script := Script(base, b.Schematic, boot)
	p.Machines.Booted(m, b, base.JoinPath("image", b.Schematic, boot.Version).String())
	p.writeScript(w, script)
}

func (p *PXE) writeScript(w http.ResponseWriter, script []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(script) //nolint:errcheck // the client hung up; nothing to do
}

// machineBase is where a machine's scripts point: the member it reached (so the nearest one serves its kernel),
// unless --pxe-url says otherwise.
func (p *PXE) machineBase(r *http.Request) *url.URL {
	if p.Fixed || r.Host == "" {
		return p.BaseURL
	}

	u := *p.BaseURL
	u.Scheme = "http"
	if r.TLS != nil {
		u.Scheme = "https"
	}

	u.Host = r.Host

	return &u
}

// chainScript asks iPXE to call the boot URL again with what it knows about the machine. The operator's own
// parameters (labels) are kept.
func chainScript(base *url.URL, q url.Values) []byte {
	var s strings.Builder

	s.WriteString("#!ipxe\n\n")
	s.WriteString("chain --replace --autofree " + base.JoinPath("pxe", "boot.ipxe").String() +
		"?mac=${mac:hexhyp}&uuid=${uuid}&serial=${serial:uristring}&hostname=${hostname:uristring}" +
		"&arch=${buildarch:uristring}")

	for _, k := range sortedLabels(q) {
		for _, v := range q[k] {
			s.WriteString("&" + url.QueryEscape(k) + "=" + url.QueryEscape(v))
		}
	}

	s.WriteString("\n")

	return []byte(s.String())
}

// noProfileScript says on the console that nothing matches, and asks again in a minute.
func noProfileScript(base *url.URL, m Machine, q url.Values) []byte {
	again := base.JoinPath("pxe", "boot.ipxe")
	again.RawQuery = q.Encode()

	var s strings.Builder

	s.WriteString("#!ipxe\n\n")
	s.WriteString("echo no Edge Factory profile matches this machine: mac " + consoleSafe(m.MAC.String()) +
		" uuid " + orNone(consoleSafe(m.UUID)) + " serial " + orNone(consoleSafe(m.Serial)) +
		" hostname " + orNone(consoleSafe(m.Hostname)) + "\n")
	s.WriteString("echo add one on any member: edgefactory profiles put NAME (GET /machines/profiles lists them)\n")
	s.WriteString("echo asking again in " + strconv.Itoa(RetrySeconds) + " seconds\n")
	s.WriteString("sleep " + strconv.Itoa(RetrySeconds) + "\n")
	s.WriteString("chain --replace --autofree " + again.String() + "\n")

	return []byte(s.String())
}

// consoleSafe keeps what a machine reported from becoming iPXE commands or settings: letters, digits and a few
// separators only.
func consoleSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".:-_", r):
			return r
		default:
			return -1
		}
	}, s)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}

	return s
}

func sortedLabels(q url.Values) []string {
	var keys []string

	for k := range q {
		if !slices.Contains(machineParams, k) {
			keys = append(keys, k)
		}
	}

	slices.Sort(keys)

	return keys
}

// parseMachine reads the parameters iPXE filled in. Empty values are unknown, not errors: iPXE leaves a setting the
// firmware lacks empty.
func parseMachine(r *http.Request) (Machine, error) {
	q := r.URL.Query()

	mac, err := net.ParseMAC(strings.ReplaceAll(q.Get("mac"), "-", ":"))
	if err != nil || len(mac) != 6 {
		return Machine{}, frontends.NewError(frontends.ClassInvalid, "invalid mac: "+q.Get("mac"), err)
	}

	arch := q.Get("arch")
	switch arch {
	case "", "x86_64", "i386", "amd64":
		arch = "amd64"
	case "arm64", "aarch64":
		arch = "arm64"
	default:
		return Machine{}, frontends.NewError(frontends.ClassInvalid, "invalid architecture: "+arch, nil)
	}

	m := Machine{MAC: mac, UUID: strings.ToLower(q.Get("uuid")), Serial: q.Get("serial"),
		Hostname: q.Get("hostname"), Arch: arch, Labels: map[string]string{}}

	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		m.IP = ap.Addr().Unmap()
	}

	for _, k := range sortedLabels(q) {
		m.Labels[k] = q.Get(k)
	}

	return m, nil
}
