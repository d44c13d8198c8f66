// Package netboot answers PXE network boot beside a site's own DHCP server: proxyDHCP on ports 67 and 4011 tells a
// booting machine which iPXE binary to load and from where, and a read-only TFTP server hands out that binary (the
// same binaries are served over HTTP for UEFI HTTP Boot).
//
// It never hands out addresses: every reply carries yiaddr 0.0.0.0 and no lease options, so it cannot disturb the
// site's DHCP server. Which member answers a machine is not its business: Config.Respond decides, and the package
// only tells it how long the machine has been asking.
package netboot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// The iPXE binaries, by the names the package serves them under (TFTP and HTTP alike).
const (
	BIOSBinary      = "undionly.kpxe"
	UEFIx64Binary   = "ipxe.efi"
	UEFIarm64Binary = "ipxe-arm64.efi"
)

var binaries = []string{BIOSBinary, UEFIx64Binary, UEFIarm64Binary}

// Config is what a Server needs.
type Config struct {
	// Interfaces are the names of the interfaces to answer on; each must exist and have an IPv4 address, the first of
	// which is this member's address there (siaddr, server identifier, TFTP and HTTP server).
	Interfaces []string
	// HTTPPort is the node's HTTP port on every interface address: boot URLs are http://<interface IPv4>:<HTTPPort>/...
	HTTPPort int
	// Binaries holds the iPXE binaries named BIOSBinary, UEFIx64Binary and UEFIarm64Binary.
	Binaries fs.FS
	// Respond says whether this member answers this client now. asking is how long the client has been repeating
	// this exchange (its MAC and transaction ID): 0 on its first packet; a new transaction ID, or a minute of
	// silence, starts again at 0. nil means always.
	Respond func(c Client, asking time.Duration) bool
	// Observe, when set, is told of every answer sent.
	Observe func(c Client, a Answer)
	// Ports overrides the well-known ports (tests and benchmarks); zero fields mean the defaults.
	Ports Ports
	// Logger receives one Info line per answer; nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil disables them.
	Registerer prometheus.Registerer
}

// Ports are the UDP ports the server uses. A zero field means the standard port.
type Ports struct {
	// DHCP is where broadcast DISCOVERs and REQUESTs arrive (67).
	DHCP int
	// Proxy is the PXE proxyDHCP port clients send REQUESTs to once they know this server (4011).
	Proxy int
	// TFTP is the TFTP server's port (69).
	TFTP int
	// Client is where replies to packets on the DHCP port go (68).
	Client int
}

func (p Ports) withDefaults() Ports {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}

	def(&p.DHCP, dhcpv4.ServerPort)
	def(&p.Proxy, 4011)
	def(&p.TFTP, 69)
	def(&p.Client, dhcpv4.ClientPort)

	return p
}

// Server runs the proxyDHCP (67 and 4011) and TFTP listeners on each interface.
type Server struct {
	cfg     Config
	ports   Ports
	addrs   map[string]netip.Addr // interface name → this member's IPv4 address on it
	logger  *slog.Logger
	metrics *metrics
	asking  *asking
	now     func() time.Time
}

// New checks cfg (the interfaces exist and have IPv4 addresses, the binaries are readable) and returns a Server
// that Run starts.
func New(cfg Config) (*Server, error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("netboot: no interface given")
	}

	if cfg.HTTPPort <= 0 || cfg.HTTPPort > 65535 {
		return nil, fmt.Errorf("netboot: HTTP port %d is not a port", cfg.HTTPPort)
	}

	addrs := make(map[string]netip.Addr, len(cfg.Interfaces))

	for _, name := range cfg.Interfaces {
		if _, dup := addrs[name]; dup {
			return nil, fmt.Errorf("netboot: interface %s given twice", name)
		}

		ip, err := interfaceIPv4(name)
		if err != nil {
			return nil, fmt.Errorf("netboot: %w", err)
		}

		addrs[name] = ip
	}

	if err := checkBinaries(cfg.Binaries); err != nil {
		return nil, fmt.Errorf("netboot: %w", err)
	}

	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	return &Server{
		cfg:     cfg,
		ports:   cfg.Ports.withDefaults(),
		addrs:   addrs,
		logger:  cfg.Logger,
		metrics: newMetrics(cfg.Registerer),
		asking:  newAsking(4096, time.Minute),
		now:     time.Now,
	}, nil
}

// interfaceIPv4 is the first IPv4 address of the named interface.
func interfaceIPv4(name string) (netip.Addr, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: %w", name, err)
	}

	addrs, err := iface.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: %w", name, err)
	}

	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap(), nil
			}
		}
	}

	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address", name)
}

func checkBinaries(bin fs.FS) error {
	if bin == nil {
		return errors.New("no iPXE binaries given")
	}

	for _, name := range binaries {
		f, err := bin.Open(name)
		if err != nil {
			return fmt.Errorf("iPXE binary: %w", err)
		}

		st, err := f.Stat()
		f.Close()

		if err != nil {
			return fmt.Errorf("iPXE binary %s: %w", name, err)
		}

		if !st.Mode().IsRegular() {
			return fmt.Errorf("iPXE binary %s is not a regular file", name)
		}
	}

	return nil
}

// Run serves until ctx is done, then returns nil; it returns an error when a listener cannot be opened or fails.
// Every listener is opened before any is served, so a missing privilege shows at once.
func (s *Server) Run(ctx context.Context) error {
	var (
		dhcp []dhcpListener
		tftp []*net.UDPConn
	)

	closeAll := func() {
		for _, l := range dhcp {
			l.conn.Close()
		}

		for _, c := range tftp {
			c.Close()
		}
	}

	for _, name := range s.cfg.Interfaces {
		ip := s.addrs[name]

		for _, l := range []struct {
			addr netip.AddrPort
			dhcp bool
		}{
			{netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(s.ports.DHCP)), true},
			{netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(s.ports.Proxy)), true},
			{netip.AddrPortFrom(ip, uint16(s.ports.TFTP)), false},
		} {
			conn, err := listenUDP(ctx, name, l.addr)
			if err != nil {
				closeAll()

				return bindError(name, l.addr, err)
			}

			if l.dhcp {
				dhcp = append(dhcp, dhcpListener{conn: conn, iface: name, port: int(l.addr.Port())})
			} else {
				tftp = append(tftp, conn)
			}
		}
	}

	return s.serve(ctx, dhcp, tftp)
}

type dhcpListener struct {
	conn  *net.UDPConn
	iface string
	port  int
}

// serve runs every listener until ctx is done or one fails, then stops them all.
func (s *Server) serve(ctx context.Context, dhcp []dhcpListener, tftpConns []*net.UDPConn) error {
	g, gctx := errgroup.WithContext(ctx)

	servers := make([]*tftp.Server, len(tftpConns))

	for i, conn := range tftpConns {
		servers[i] = s.newTFTP()
		g.Go(func() error { return servers[i].Serve(conn) })
	}

	for _, l := range dhcp {
		g.Go(func() error { return s.serveDHCP(gctx, l) })
	}

	var once sync.Once

	stop := func() {
		once.Do(func() {
			for _, l := range dhcp {
				l.conn.Close()
			}

			// Shutdown closes the listener and waits for transfers in flight.
			for _, srv := range servers {
				srv.Shutdown()
			}
		})
	}

	g.Go(func() error {
		<-gctx.Done()
		stop()

		return nil
	})

	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}

	return err
}

// listenUDP opens a UDP socket bound to iface (so broadcasts leave by it and only its packets arrive) at addr.
func listenUDP(ctx context.Context, iface string, addr netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error

		err := c.Control(func(fd uintptr) {
			// Several interfaces each hold 0.0.0.0:67, told apart by the device they are bound to.
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}

			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}

			serr = unix.BindToDevice(int(fd), iface)
		})

		return errors.Join(err, serr)
	}}

	pc, err := lc.ListenPacket(ctx, "udp4", addr.String())
	if err != nil {
		return nil, err
	}

	conn, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()

		return nil, fmt.Errorf("listen %s: not a UDP socket", addr)
	}

	return conn, nil
}

// bindError says which listener failed and, when the cause is a missing privilege, which ones the member needs.
func bindError(iface string, addr netip.AddrPort, err error) error {
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("netboot: listen on %s %s: %w: the member needs CAP_NET_BIND_SERVICE and CAP_NET_RAW "+
			"(or root) for --netboot-interface", iface, addr, err)
	}

	return fmt.Errorf("netboot: listen on %s %s: %w", iface, addr, err)
}
