package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"

	api "github.com/edgefactory/edgefactory/frontends/machines"
	"github.com/edgefactory/edgefactory/frontends/netboot"
	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/node/internal/machines"
)

// Network boot: the machine table every member serves, and which member of a segment answers a machine.

// netbootBackupDelay is how long a machine must have been repeating one exchange before the second member in its
// order answers it too (the third waits twice as long). Gossip takes a dead member out of the order within seconds;
// this covers a member that gossip still sees but whose answers do not arrive. It is longer than the retransmissions
// of a client that was answered: OVMF's HTTP Boot repeats its request ~4 s after an answer, and a PXE ROM whose
// first DISCOVER went unanswered repeats at 4, 12, 28 and 60 s, so the second member answers its 28 s one.
const netbootBackupDelay = 20 * time.Second

// newMachines makes the machine table: profiles in Raft, boots seen by every member.
func (n *Node) newMachines() *machines.Table {
	return machines.New(machines.Config{
		Self: n.cfg.NodeName, Settings: n.store, Leader: n.cluster,
		CheckBoot: func(ctx context.Context, schematic, version, path string) error {
			_, err := n.catalog.Plan(ctx, schematic, version, path, recipe.ParsePXEPath) // a plan, not a build

			return err
		},
		OthersSeen: n.othersSeen, Registerer: n.reg, Logger: n.log.With("component", "machines"),
	})
}

// othersSeen asks every other live member for the boots it saw (GET /machines/seen?member=self); a member that does
// not answer within two seconds is left out.
func (n *Node) othersSeen(ctx context.Context) []api.Boot {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()

	var (
		out  []api.Boot
		errs = make(chan []api.Boot)
	)

	others := 0

	for _, name := range n.cluster.Members() {
		base, ok := n.cluster.URL(name)
		if name == n.cfg.NodeName || !ok {
			continue
		}

		others++

		go func() { errs <- fetchSeen(ctx, base) }()
	}

	for range others {
		out = append(out, <-errs...)
	}

	return out
}

func fetchSeen(ctx context.Context, base string) []api.Boot {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/machines/seen?member=self", nil)
	if err != nil {
		return nil
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()

	var boots []api.Boot
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&boots) != nil {
		return nil
	}

	return boots
}

// netbootSegments finds the prefix of each network-boot interface: what the member gossips, so the members on one
// segment find each other.
func netbootSegments(names []string) (map[string]string, error) {
	out := map[string]string{}

	for _, name := range names {
		iface, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("--netboot-interface %s: %w", name, err)
		}

		addrs, err := iface.Addrs()
		if err != nil {
			return nil, fmt.Errorf("--netboot-interface %s: %w", name, err)
		}

		for _, a := range addrs {
			ipnet, ok := a.(*net.IPNet)
			if !ok || ipnet.IP.To4() == nil {
				continue
			}

			p, err := netip.ParsePrefix(ipnet.String())
			if err != nil {
				continue
			}

			out[name] = p.Masked().String()

			break
		}

		if out[name] == "" {
			return nil, fmt.Errorf("--netboot-interface %s has no IPv4 address: network boot answers on the "+
				"machine's IPv4 segment", name)
		}
	}

	return out, nil
}

// netbootOrder is the order in which the members of a segment answer a machine: rendezvous hashing of each member
// with the MAC, so every member computes the same order without coordination, and a member's departure moves only
// the machines it answered.
func netbootOrder(members []string, mac net.HardwareAddr) []string {
	order := slices.Clone(members)
	weight := func(m string) uint64 { return xxhash.Sum64String(m + "\x00" + mac.String()) }

	slices.SortFunc(order, func(a, b string) int {
		wa, wb := weight(a), weight(b)
		switch {
		case wa > wb:
			return -1
		case wa < wb:
			return 1
		default:
			return 0
		}
	})

	return order
}

// netbootRespond says whether this member answers mac on the segment now: the first live member in the machine's
// order at once, the k-th once the machine has been asking for k × netbootBackupDelay.
func (n *Node) netbootRespond(segment string, mac net.HardwareAddr, asking time.Duration) bool {
	order := netbootOrder(n.cluster.NetbootMembers(segment), mac)

	pos := slices.Index(order, n.cfg.NodeName)
	if pos < 0 { // gossip has not told the others about this member yet, or it is leaving: answer as the last
		pos = len(order)
	}

	return asking >= time.Duration(pos)*netbootBackupDelay
}

// newNetboot makes the network-boot server for the configured interfaces (nil when there are none).
func (n *Node) newNetboot() (*netboot.Server, error) {
	if len(n.cfg.NetbootInterfaces) == 0 {
		return nil, nil //nolint:nilnil // no network boot is not an error
	}

	_, portText, err := net.SplitHostPort(n.ln.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("network boot: HTTP port of %s: %w", n.ln.Addr(), err)
	}

	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("network boot: HTTP port of %s: %w", n.ln.Addr(), err)
	}

	return netboot.New(netboot.Config{
		Interfaces: n.cfg.NetbootInterfaces,
		HTTPPort:   port,
		Binaries:   os.DirFS(n.cfg.ipxeDir()),
		Respond: func(c netboot.Client, asking time.Duration) bool {
			return n.netbootRespond(n.netbootSegments[c.Interface], c.MAC, asking)
		},
		Observe:    n.netbootAnswered,
		Logger:     n.log.With("component", "netboot", "member", n.cfg.NodeName),
		Registerer: n.reg,
	})
}

// netbootAnswered records a proxyDHCP answer in the boots table (the netboot package logs it).
func (n *Node) netbootAnswered(c netboot.Client, a netboot.Answer) {
	n.machines.Answered(api.Boot{MAC: c.MAC.String(), Served: a.BootFile, Arch: c.Arch.String(), UUID: c.UUID})
}
