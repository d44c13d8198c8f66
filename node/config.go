package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/blang/semver/v4"
	"github.com/hashicorp/memberlist"

	settingsapi "github.com/edgefactory/edgefactory/frontends/settings"
	"github.com/edgefactory/edgefactory/imager/buildprofile"
	"github.com/edgefactory/edgefactory/imager/hosttools"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/node/internal/keys"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/ring"
)

// Config is everything a member needs to run. The command line, the config file and the environment all fill it
// (cmd/edgefactory); Defaults gives the values a one-node factory runs with.
type Config struct {
	// NodeName identifies the member in Raft and gossip; stable across restarts. Default: the host name.
	NodeName string
	// Listen is the HTTP listener (API, PXE, OCI, metrics, peer API) as host:port.
	Listen string
	// ExternalURL is how clients reach this node (used in PXE scripts and the schematic extension).
	// Default: http://<Listen>.
	ExternalURL string
	// PXEURL overrides ExternalURL in PXE scripts.
	PXEURL string
	// DataDir holds raft/, state.db, cas/, inputs/ and tmp/.
	DataDir string

	// RaftListen is the Raft transport address (host:port).
	RaftListen string
	// BootstrapExpect is the number of members that bootstrap the cluster together (1: a one-node cluster).
	BootstrapExpect int

	// GossipListen is the memberlist (gossip) address, host:port.
	GossipListen string
	// Join lists members' gossip addresses to join (host:port).
	Join []string
	// Zone is a free-form location label gossiped with the member (shown by /cluster).
	Zone string
	// GossipKey encrypts gossip (16, 24 or 32 bytes, base64 on the command line); empty: plain.
	GossipKey []byte
	// GossipAdvertise is the gossip address other members dial (IP or host name, optional port), when
	// GossipListen binds 0.0.0.0 or sits behind NAT. Default: the bound address, or a private IP of this host.
	GossipAdvertise string
	// RaftAdvertise is the Raft address other members dial when RaftListen binds 0.0.0.0 (a missing port means
	// the bound port).
	RaftAdvertise string
	// DeadMemberGrace is how long a member may be dead before the leader removes it from Raft (a member that
	// leaves gracefully is removed at once).
	DeadMemberGrace time.Duration
	// ClusterSecret authenticates the peer API between members over plain HTTP: the way before ClusterListen, kept
	// for clusters not moved yet, and warned about at every start.
	ClusterSecret string
	// ClusterListen is the mutual-TLS cluster port (host:port) the peer API and Raft share (docs/architecture.md
	// §15); with it, RaftListen is unused, Join names the seeds' cluster ports, and gossip is encrypted with the
	// cluster's key. ClusterAdvertise is the address others dial when it binds 0.0.0.0.
	ClusterListen, ClusterAdvertise string
	// TLSCert and TLSKey (PEM files) serve the public API over HTTPS; default plain HTTP (iPXE firmware often
	// cannot do TLS).
	TLSCert, TLSKey string
	// JoinToken admits a member without a certificate (`edgefactory token create`, `edgefactory init`).
	JoinToken string
	// Replicas is how many members hold each asset (the owner builds, the others keep copies).
	Replicas int
	// RingPartitions is the ring's partition count; it is fixed when the cluster is created (kept in Raft).
	RingPartitions int

	// Upstream is where release inputs come from.
	Upstream Upstream
	// CatalogRefresh is how often the leader re-lists upstream versions.
	CatalogRefresh time.Duration
	// CatalogRecheck is how often an already known version's catalog is read again in full.
	CatalogRecheck time.Duration

	// CacheSize bounds the bytes of assets kept on this node (least recently used go first); 0 is 80 % of the data disk (cas.DiskShare).
	CacheSize int64
	// LowSpaceWatermark is the free space kept on the data disk: below it cached assets are evicted whatever
	// CacheSize says; 0 turns it off.
	//
	// MinVersion and Broken (in Upstream), Replicas, CatalogRefresh, CacheSize and LowSpaceWatermark are cluster
	// settings (docs/api.md §12): these fields are the values a new cluster starts with, and the member follows the
	// cluster's values from then on.
	LowSpaceWatermark int64
	// BuildConcurrency bounds simultaneous builds on this node.
	BuildConcurrency int
	// BuildQueue bounds the builds waiting for a slot on this node; past it a build is refused with 503 and
	// Retry-After (0: imager.DefaultQueueDepth).
	BuildQueue int
	// BuildTimeout bounds one build.
	BuildTimeout time.Duration
	// MaxConnections bounds the public listener's open connections (0: unbounded); past it a new connection waits
	// for one to close. StallTimeout cuts a client that reads nothing of a response for that long (0: never).
	MaxConnections int
	StallTimeout   time.Duration
	// ClientRate and MemberRate cap the bytes per second this member sends in responses to one client address and
	// to all clients together (0: uncapped); peers' copies are not capped.
	ClientRate int64
	MemberRate int64
	// BuildNice is the CPU niceness (0-19) of builds and the tools they run: serving goes first on a busy node.
	BuildNice int
	// SecureBoot names the signing material in files; when empty the cluster generates its own once.
	SecureBoot SecureBootFiles
	// CosignKey is a PEM ECDSA private key installer images are signed with; when empty the cluster generates one.
	CosignKey string
	// SecureBootKeyBits is the size of a generated UKI signing key (4096; tests use 2048).
	SecureBootKeyBits int
	// InputPublicKeys are PEM public keys the cosign signatures of release inputs must verify with (imported bundles
	// are checked against them). InputVerifyOff accepts unsigned inputs: for labs only, and warned at every start.
	InputPublicKeys [][]byte
	InputVerifyOff  bool

	// NetbootInterfaces are the interfaces this member answers network boot on (proxyDHCP, TFTP): none by default.
	NetbootInterfaces []string
	// IPXEDir holds the iPXE binaries network boot hands out (undionly.kpxe, ipxe.efi, ipxe-arm64.efi). Without
	// it, network boot uses <DataDir>/ipxe, filled from the cluster once a bundle carrying them was imported.
	IPXEDir string

	// APITokenFile and Htpasswd hold the credentials protected writes ask for (frontends/auth): changes of the
	// cluster's configuration always need them, unless Dev.
	APITokenFile string
	Htpasswd     string
	// ProtectWrites makes creating schematics and flavors and writing profiles need those credentials too.
	ProtectWrites bool
	// Dev is the one-node lab of `edgefactory dev`: cluster settings may change without credentials there.
	Dev bool

	// Role is build (the default: builds when its build profile is the cluster's and its host tools are not
	// degraded) or cache (never builds; fetches, serves and holds copies).
	Role string

	// Version is this build's version string.
	Version string
	// Logger receives everything the node logs.
	Logger *slog.Logger

	// tune shortens gossip and bootstrap timers for clusters on loopback; only tests set it (export_test.go).
	tune *tuning
}

// tuning overrides timers that suit a LAN but slow tests down.
type tuning struct {
	gossip func(*memberlist.Config) // memberlist's failure detection and gossip timers
	rejoin time.Duration            // how often seeds are joined again
	settle time.Duration            // how long the member list must hold still before bootstrapping
	// peerSilence replaces peer.SilenceTimeout: how long a peer may send nothing before it is abandoned.
	peerSilence time.Duration
	// certValidity replaces the certificates' lifetime (renewal tests); joinWait how long a join is retried.
	certValidity, joinWait time.Duration
	// drain replaces drainTimeout: how long requests under way may finish when the node stops.
	drain time.Duration
	// raftBackoff sends to unreachable Raft followers with raft's own back-off (see raftstore.Config.RaftBackoff).
	raftBackoff bool
	// ipxePoll replaces ipxePoll: how often a member waiting for the iPXE binaries reads the cluster setting.
	ipxePoll time.Duration
	// noNetbootServer: Run starts no proxyDHCP and TFTP listeners, nor the wait for the iPXE binaries (tests, which
	// must not bind port 67, call that wait themselves).
	noNetbootServer bool
	// now replaces the clock of what a member remembers about copies that went wrong (assets.Config.Now).
	now func() time.Time
	// profileArch replaces the build profile's architecture (runtime.GOARCH): an arm64 member on an amd64 host.
	profileArch string
	// checkTools replaces hosttools.Check (a member whose tools are degraded, beside others that are not).
	checkTools func(context.Context) hosttools.Report
}

// ClusterUpstream as the upstream registry makes the cluster its own upstream: release inputs come from the images
// air-gap bundles brought (edgefactory import), and no member reads from outside the cluster.
const ClusterUpstream = "cluster"

// Upstream names the registry the release inputs are read from.
type Upstream struct {
	Registry  string // a registry host[:port], or ClusterUpstream
	Namespace string
	// Insecure selects plain HTTP.
	Insecure bool
	// MinVersion hides older versions ("1.2.0" like the official service).
	MinVersion string
	// Broken versions are hidden and refused.
	Broken []string
}

// Cluster reports whether the cluster is its own upstream.
func (u Upstream) Cluster() bool { return u.Registry == ClusterUpstream }

// normalizeVersions checks the minimum and broken versions and spells them in full (v1.9 means v1.9.0), so the
// listing and the catalog read them alike; a version that does not parse is a mistake to report, not to ignore.
func (u *Upstream) normalizeVersions() []error {
	var errs []error

	if u.MinVersion == "" {
		u.MinVersion = Defaults().Upstream.MinVersion
	}

	if v, err := semver.ParseTolerant(u.MinVersion); err != nil {
		errs = append(errs, fmt.Errorf("min Talos version %q: %w (expected a version like 1.2.0)", u.MinVersion, err))
	} else {
		u.MinVersion = v.String()
	}

	for i, b := range u.Broken {
		if v, err := semver.ParseTolerant(b); err != nil {
			errs = append(errs, fmt.Errorf("broken version %q: %w (expected a version like v1.9.2)", b, err))
		} else {
			u.Broken[i] = "v" + v.String()
		}
	}

	return errs
}

// checkBaseURL checks a URL that machines and members are given to reach this node: PXE scripts point kernels at
// it, so anything but an absolute http(s) URL naming a reachable host gives scripts no machine can follow.
func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)

	switch {
	case err != nil:
		return fmt.Errorf("%w (expected e.g. http://10.0.0.11:8080)", err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Opaque != "":
		return errors.New("want an http:// or https:// URL, e.g. http://10.0.0.11:8080")
	case u.Hostname() == "":
		return errors.New("no host in the URL")
	case net.ParseIP(u.Hostname()) != nil && net.ParseIP(u.Hostname()).IsUnspecified():
		return fmt.Errorf("%s is a listening address, not one a machine can reach: give this host's address",
			u.Hostname())
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("a base URL takes no query or fragment")
	}

	return nil
}

// certValidity is how long member certificates last.
func (c Config) certValidity() time.Duration {
	if c.tune != nil && c.tune.certValidity > 0 {
		return c.tune.certValidity
	}

	return defaultCertValidity
}

// joinWait is how long a member retries its join before giving up.
func (c Config) joinWait() time.Duration {
	if c.tune != nil && c.tune.joinWait > 0 {
		return c.tune.joinWait
	}

	return defaultJoinWait
}

// initialSettings are the cluster settings this member's configuration gives (see Config.LowSpaceWatermark).
func (c *Config) initialSettings() settingsapi.Settings {
	broken := append([]string{}, c.Upstream.Broken...) // [] rather than null in the document

	return settingsapi.Settings{
		MinVersion: c.Upstream.MinVersion, BrokenVersions: broken, Replicas: c.Replicas,
		CatalogInterval: c.CatalogRefresh.String(), CacheBudget: c.CacheSize, LowSpaceWatermark: c.LowSpaceWatermark,
	}
}

// SecureBootFiles are PEM files of the secure-boot signing key (PKCS#1), its certificate and the PCR key.
type SecureBootFiles = keys.Files

// Defaults returns the configuration of a one-node factory reading ghcr.io.
func Defaults() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "edgefactory"
	}

	return Config{
		NodeName:        host,
		Listen:          "0.0.0.0:8080",
		DataDir:         "./data",
		RaftListen:      "127.0.0.1:7947",
		BootstrapExpect: 1,
		GossipListen:    "0.0.0.0:7946",
		DeadMemberGrace: 5 * time.Minute,
		Replicas:        2,
		RingPartitions:  271,
		Upstream: Upstream{
			Registry:   "ghcr.io",
			Namespace:  "siderolabs",
			MinVersion: "1.2.0",
		},
		CatalogRefresh:    15 * time.Minute,
		CatalogRecheck:    6 * time.Hour,
		BuildConcurrency:  2,
		BuildTimeout:      20 * time.Minute,
		BuildNice:         10,
		MaxConnections:    4096,
		StallTimeout:      time.Minute,
		SecureBootKeyBits: 4096,
		Version:           "dev",
		Role:              buildprofile.RoleBuild,
	}
}

// Validate reports the configuration mistakes an operator must fix, as New would refuse them.
func (c Config) Validate() error { return c.validate() }

// validate fills derived defaults and reports configuration mistakes an operator must fix.
func (c *Config) validate() error {
	var errs []error

	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is empty"))
	}

	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", c.Listen, err))
	}

	if _, _, err := net.SplitHostPort(c.RaftListen); err != nil {
		errs = append(errs, fmt.Errorf("raft listen address %q: %w", c.RaftListen, err))
	}

	if c.DataDir == "" {
		errs = append(errs, errors.New("data directory is empty"))
	}

	if c.Upstream.Registry == "" {
		errs = append(errs, errors.New("upstream registry is empty"))
	}

	errs = append(errs, c.Upstream.normalizeVersions()...)

	for _, u := range []struct{ flag, raw string }{{"--external-url", c.ExternalURL}, {"--pxe-url", c.PXEURL}} {
		if err := checkBaseURL(u.raw); u.raw != "" && err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", u.flag, u.raw, err))
		}
	}

	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key are given together"))
	}

	if c.ClusterListen != "" {
		if _, _, err := net.SplitHostPort(c.ClusterListen); err != nil {
			errs = append(errs, fmt.Errorf("--cluster-listen %q: %w", c.ClusterListen, err))
		}

		if c.ClusterSecret != "" {
			errs = append(errs, errors.New("--cluster-secret and --cluster-listen exclude each other: members of a "+
				"secure cluster authenticate with certificates"))
		}

		if len(c.GossipKey) > 0 {
			errs = append(errs, errors.New("--gossip-key is not used with --cluster-listen: the cluster holds "+
				"its own gossip key"))
		}
	} else if c.JoinToken != "" {
		errs = append(errs, errors.New("--join-token needs --cluster-listen: join tokens admit members of a "+
			"secure cluster"))
	}

	if (c.BootstrapExpect > 1 || len(c.Join) > 0) && c.ClusterSecret == "" && c.ClusterListen == "" {
		errs = append(errs, errors.New("a cluster of more than one member needs --cluster-secret (the same on "+
			"every member): it authenticates the members' peer API"))
	}

	if c.CacheSize < 0 || c.LowSpaceWatermark < 0 {
		errs = append(errs, fmt.Errorf("cache size %d and low-space watermark %d must not be negative", c.CacheSize,
			c.LowSpaceWatermark))
	}

	if c.Replicas < 1 {
		errs = append(errs, fmt.Errorf("replicas must be at least 1, got %d", c.Replicas))
	}

	if c.RingPartitions < 1 {
		errs = append(errs, fmt.Errorf("ring partitions must be at least 1, got %d", c.RingPartitions))
	} else if err := (ring.Config{PartitionCount: c.RingPartitions}).Validate(); err != nil {
		// The ring would quietly use its default count while the cluster records the flag's in Raft for good.
		errs = append(errs, fmt.Errorf("--ring-partitions: %w", err))
	}

	if n := len(c.GossipKey); n != 0 && n != 16 && n != 24 && n != 32 {
		errs = append(errs, fmt.Errorf("gossip key must be 16, 24 or 32 bytes, got %d", n))
	}

	if role, err := buildprofile.ParseRole(c.Role); err != nil {
		errs = append(errs, fmt.Errorf("--role: %w", err))
	} else {
		c.Role = role
	}

	if c.BootstrapExpect < 1 {
		errs = append(errs, fmt.Errorf("bootstrap-expect must be at least 1, got %d", c.BootstrapExpect))
	}

	if c.SecureBoot.Configured() && (c.SecureBoot.Key == "" || c.SecureBoot.Cert == "" || c.SecureBoot.PCRKey == "") {
		errs = append(errs, errors.New("secure-boot key, certificate and PCR key files must be given together"))
	}

	if _, err := signing.ParsePublicKeys(c.InputPublicKeys...); err != nil {
		errs = append(errs, fmt.Errorf("--input-public-key: %w", err))
	}

	if len(c.InputPublicKeys) == 0 && !c.InputVerifyOff {
		errs = append(errs, errors.New("release inputs are checked against their cosign signatures: give the "+
			"public key the release is signed with (--input-public-key FILE, repeatable; `edgefactory synthetic "+
			"public-key` prints the synthetic release's), or --input-verify=off in a lab"))
	}

	if c.BuildConcurrency < 1 {
		errs = append(errs, fmt.Errorf("build concurrency must be at least 1, got %d", c.BuildConcurrency))
	}

	if c.MaxConnections < 0 || c.StallTimeout < 0 || c.ClientRate < 0 || c.MemberRate < 0 {
		errs = append(errs, fmt.Errorf("--max-connections (%d), --stall-timeout (%v), --client-rate (%d) and "+
			"--member-rate (%d) cannot be negative", c.MaxConnections, c.StallTimeout, c.ClientRate, c.MemberRate))
	}

	if c.BuildNice < 0 || c.BuildNice > 19 {
		errs = append(errs, fmt.Errorf("build niceness must be 0 to 19, got %d", c.BuildNice))
	}

	if c.BuildTimeout <= 0 {
		c.BuildTimeout = Defaults().BuildTimeout
	}

	if c.SecureBootKeyBits == 0 {
		c.SecureBootKeyBits = Defaults().SecureBootKeyBits
	}

	if c.DeadMemberGrace <= 0 {
		c.DeadMemberGrace = Defaults().DeadMemberGrace
	}

	if c.CatalogRefresh <= 0 {
		c.CatalogRefresh = Defaults().CatalogRefresh
	}

	if c.CatalogRecheck <= 0 {
		c.CatalogRecheck = Defaults().CatalogRecheck
	}

	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}

	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}

	return errors.Join(errs...)
}

// peerSilence is how long a peer may say nothing before it is abandoned: peer.SilenceTimeout unless a test
// shortened it.
// copyClock is the clock of what the member remembers about copies that went wrong (nil: the real one).
func (c Config) copyClock() func() time.Time {
	if c.tune != nil {
		return c.tune.now
	}

	return nil
}

func (c Config) peerSilence() time.Duration {
	if c.tune != nil && c.tune.peerSilence > 0 {
		return c.tune.peerSilence
	}

	return peer.SilenceTimeout
}

// trust is how release inputs and imported images are checked, as configured (validate checked the keys parse).
func (c Config) trust() *release.Trust {
	keys, _ := signing.ParsePublicKeys(c.InputPublicKeys...)

	return &release.Trust{Keys: keys, Off: c.InputVerifyOff}
}
