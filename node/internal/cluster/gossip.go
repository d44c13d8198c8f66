package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hashicorp/memberlist"
)

// memberlist's side of membership: its configuration (addresses, timers, encryption), the delegate through which
// it reports members and carries their metadata, and its log lines turned into structured ones.

// memberlistConfig builds memberlist's configuration: LAN defaults, our addresses, key, delegates and logger.
func (m *membership) memberlistConfig() (*memberlist.Config, error) {
	cfg := m.cfg
	bindIP, bindPort, err := splitIPPort(cfg.BindAddr, true)
	if err != nil {
		return nil, fmt.Errorf("gossip bind address %q: %w", cfg.BindAddr, err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr, mc.BindPort = bindIP, bindPort
	mc.AdvertisePort = bindPort // memberlist's default 7946 would be wrong for any other port
	if cfg.AdvertiseAddr != "" {
		ip, port, err := splitIPPort(cfg.AdvertiseAddr, false)
		if err != nil {
			return nil, fmt.Errorf("gossip advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
		mc.AdvertiseAddr = ip
		if port != 0 {
			mc.AdvertisePort = port
		}
	}
	mc.SecretKey = cfg.EncryptKey
	if len(cfg.EncryptKey) > 0 {
		// A keyring of our own, so the cluster's key can be rotated without a restart (Cluster.Keyring).
		kr, err := memberlist.NewKeyring(nil, cfg.EncryptKey)
		if err != nil {
			return nil, fmt.Errorf("gossip key: %w", err)
		}
		mc.Keyring = kr
	}
	mc.DeadNodeReclaimTime = cfg.DeadNodeReclaimTime
	mc.Logger = log.New(&gossipLogWriter{log: cfg.Logger.With("component", "memberlist", "node", cfg.NodeName),
		refused: m.refused}, "", 0)
	d := &gossipDelegate{m: m}
	mc.Delegate, mc.Events, mc.Conflict, mc.Ping = d, d, d, d
	if cfg.tune != nil {
		cfg.tune(mc)
	}
	if cfg.wrapTransport != nil {
		if err := wrapTransport(mc, cfg.wrapTransport); err != nil {
			return nil, err
		}
	}
	return mc, nil
}

// wrapTransport creates memberlist's network transport itself (memberlist only picks a free port for the one it
// creates) and hands it to wrap.
func wrapTransport(mc *memberlist.Config,
	wrap func(string, memberlist.NodeAwareTransport) memberlist.NodeAwareTransport) error {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: mc.Logger,
	})
	if err != nil {
		return fmt.Errorf("start gossip transport: %w", err)
	}
	if mc.BindPort == 0 {
		if mc.AdvertisePort == 0 {
			mc.AdvertisePort = nt.GetAutoBindPort()
		}
		mc.BindPort = nt.GetAutoBindPort()
	}
	mc.Transport = wrap(net.JoinHostPort(mc.BindAddr, strconv.Itoa(mc.BindPort)), nt)
	return nil
}

// splitIPPort splits host:port (the port may be missing when !needPort) and resolves a host name to an IP:
// memberlist takes IPs only.
func splitIPPort(addr string, needPort bool) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		if needPort {
			return "", 0, err
		}
		host, portStr = addr, ""
	}
	port := 0
	if portStr != "" {
		if port, err = strconv.Atoi(portStr); err != nil || port < 0 || port > 65535 {
			return "", 0, fmt.Errorf("bad port %q", portStr)
		}
	}
	if host == "" {
		return "0.0.0.0", port, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), port, nil
	}
	ips, err := net.LookupIP(host) //nolint:noctx // New takes no context: a lookup at startup, bounded by the resolver
	if err != nil || len(ips) == 0 {
		return "", 0, fmt.Errorf("resolve %s: %w", host, errors.Join(err, errors.New("no address")))
	}
	return ips[0].String(), port, nil
}

// gossipDelegate is memberlist's view of this node: its metadata, and where its events go.
type gossipDelegate struct{ m *membership }

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.raw) > limit {
		return nil // encodeMeta checked the size: unreachable
	}
	return slices.Clone(d.m.raw)
}

func (d *gossipDelegate) NotifyMsg([]byte) {}

func (d *gossipDelegate) GetBroadcasts(_, _ int) [][]byte { return nil }

func (d *gossipDelegate) LocalState(bool) []byte { return nil }

func (d *gossipDelegate) MergeRemoteState([]byte, bool) {}

func (d *gossipDelegate) NotifyJoin(n *memberlist.Node) { d.m.record(n, false) }

func (d *gossipDelegate) NotifyUpdate(n *memberlist.Node) { d.m.record(n, false) }

func (d *gossipDelegate) NotifyLeave(n *memberlist.Node) { d.m.record(n, true) }

func (d *gossipDelegate) AckPayload() []byte { return nil }

// NotifyPingComplete hears a member answer a probe: the last contact /cluster shows.
func (d *gossipDelegate) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	d.m.heardFrom(other.Name, time.Now())
}

// NotifyConflict fires when two addresses claim one name. When the name is ours, the others still know an earlier
// run of this node (restarted from a new address before being declared dead): they accept the new address once
// the old one is dead and DeadNodeReclaimTime has passed, and a join is what tells them, so join again soon.
func (d *gossipDelegate) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name != d.m.cfg.NodeName {
		return
	}
	select {
	case d.m.rejoin <- struct{}{}:
	default:
	}
}

// gossipLogWriter turns memberlist's "[LEVEL] memberlist: message" lines into slog records, and counts the
// messages refused for their encryption (memberlist reports those only in its log).
type gossipLogWriter struct {
	log     *slog.Logger
	refused prometheus.Counter
}

func (w *gossipLogWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		if w.refused != nil && (strings.Contains(line, "Decrypt packet failed") ||
			strings.Contains(line, "remote state is not encrypted") || strings.Contains(line, "No installed keys")) {
			w.refused.Inc()
		}
		level, msg := gossipLogLevel(line)
		w.log.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

func gossipLogLevel(line string) (slog.Level, string) {
	level := slog.LevelInfo
	for _, p := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[TRACE]", slog.LevelDebug - 4}, {"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError},
	} {
		if rest, ok := strings.CutPrefix(line, p.prefix); ok {
			level, line = p.level, rest
			break
		}
	}
	line = strings.TrimPrefix(strings.TrimSpace(line), "memberlist: ")
	if level == slog.LevelError && strings.HasPrefix(line, "Conflicting address") {
		// A member restarted from a new address before its old one was declared dead: it sorts itself out after
		// DeadNodeReclaimTime. Two live nodes sharing a name keep logging it, which a warning shows as well.
		level = slog.LevelWarn
	}
	return level, line
}
