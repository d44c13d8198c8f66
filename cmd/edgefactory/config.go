package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/node"
)

// envPrefix names the environment overrides: --upstream-registry is EDGEFACTORY_UPSTREAM_REGISTRY.
const envPrefix = "EDGEFACTORY_"

// nodeFlags binds the flags every node-running command shares to cfg.
func nodeFlags(fs *pflag.FlagSet, cfg *node.Config) {
	fs.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "name of this member (stable across restarts)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTP listen address (API, PXE, OCI, metrics)")
	fs.StringVar(&cfg.ExternalURL, "external-url", cfg.ExternalURL,
		"URL clients use to reach this node (default http://<listen>)")
	fs.StringVar(&cfg.PXEURL, "pxe-url", cfg.PXEURL, "URL used in PXE scripts (default --external-url)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (raft, state.db, cas, inputs, tmp)")
	fs.StringVar(&cfg.RaftListen, "raft-listen", cfg.RaftListen, "Raft transport address")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", cfg.BootstrapExpect,
		"members that bootstrap the cluster together (1: one-node cluster; give every member the same value)")
	fs.StringVar(&cfg.RaftAdvertise, "raft-advertise", cfg.RaftAdvertise,
		"Raft address other members dial (default: --raft-listen)")
	fs.StringVar(&cfg.GossipListen, "gossip-listen", cfg.GossipListen, "gossip (memberlist) address, TCP and UDP")
	fs.StringVar(&cfg.GossipAdvertise, "gossip-advertise", cfg.GossipAdvertise,
		"gossip address other members dial (default: the bound address or a private IP)")
	fs.StringSliceVar(&cfg.Join, "join", cfg.Join,
		"members to join, comma separated: their cluster ports (host:port) with --cluster-listen, else their "+
			"gossip addresses; re-joined periodically")
	fs.StringVar(&cfg.ClusterListen, "cluster-listen", cfg.ClusterListen,
		"mutual-TLS cluster port (host:port) carrying the peer API and Raft (replaces --raft-listen and "+
			"--cluster-secret; needs `edgefactory init` or --join-token)")
	fs.StringVar(&cfg.ClusterAdvertise, "cluster-advertise", cfg.ClusterAdvertise,
		"cluster port address other members dial (default: --cluster-listen)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "PEM certificate serving the public API over HTTPS "+
		"(with --tls-key; default plain HTTP, which iPXE firmware needs)")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "PEM key of --tls-cert")
	fs.StringVar(&cfg.JoinToken, "join-token", os.Getenv(envPrefix+"JOIN_TOKEN"),
		"join token admitting this member to a secure cluster (edgefactory token create; env "+envPrefix+
			"JOIN_TOKEN); used once, to obtain the member's certificate")
	fs.StringVar(&cfg.Zone, "zone", cfg.Zone, "location label of this member (voters spread across zones)")
	fs.StringVar(&cfg.Role, "role", cfg.Role, "build: builds when its build profile is the cluster's and its host "+
		"tools are sound; cache: never builds, fetches, serves and holds copies")
	fs.BytesBase64Var(&cfg.GossipKey, "gossip-key", cfg.GossipKey,
		"base64 of a 16, 24 or 32 byte key encrypting gossip (the same on every member)")
	fs.StringVar(&cfg.APITokenFile, "api-token-file", cfg.APITokenFile,
		"file of bearer tokens (NAME:TOKEN a line) that changes of the cluster settings, join tokens and "+
			"certificates need (and, with --protect-writes, schematics, flavors and profiles)")
	fs.BoolVar(&cfg.ProtectWrites, "protect-writes", cfg.ProtectWrites,
		"creating schematics and flavors and writing network-boot profiles need the credentials too")
	fs.StringVar(&cfg.Htpasswd, "htpasswd", cfg.Htpasswd,
		"htpasswd file (bcrypt, SHA or MD5 entries) of users that protected writes accept")
	fs.StringVar(&cfg.ClusterSecret, "cluster-secret", cfg.ClusterSecret,
		"shared secret authenticating the members' peer API over plain HTTP (deprecated: use --cluster-listen "+
			"and join tokens)")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "members holding each asset, the owner and R-1 copies (a cluster setting: the value a new cluster starts with)")
	fs.IntVar(&cfg.RingPartitions, "ring-partitions", cfg.RingPartitions,
		"partitions of the consistent-hash ring (fixed when the cluster is created)")
	fs.DurationVar(&cfg.DeadMemberGrace, "dead-member-grace", cfg.DeadMemberGrace,
		"how long a member may be dead before the leader removes it from Raft")
	fs.StringVar(&cfg.Upstream.Registry, "upstream-registry", cfg.Upstream.Registry,
		"registry holding Talos release images (a local mirror), or cluster: the images brought by edgefactory import")
	fs.StringVar(&cfg.Upstream.Namespace, "upstream-namespace", cfg.Upstream.Namespace,
		"repository namespace of the release images")
	fs.BoolVar(&cfg.Upstream.Insecure, "upstream-insecure", cfg.Upstream.Insecure,
		"talk plain HTTP to the upstream registry")
	fs.StringVar(&cfg.Upstream.MinVersion, "min-talos-version", cfg.Upstream.MinVersion,
		"hide Talos versions older than this (a cluster setting: the value a new cluster starts with)")
	fs.StringSliceVar(&cfg.Upstream.Broken, "broken-versions", cfg.Upstream.Broken,
		"Talos versions to hide and refuse, comma separated (a cluster setting: the value a new cluster starts with)")
	fs.DurationVar(&cfg.CatalogRefresh, "catalog-refresh", cfg.CatalogRefresh,
		"how often the leader re-reads the upstream version list (a cluster setting: the value a new cluster "+
			"starts with)")
	fs.DurationVar(&cfg.CatalogRecheck, "catalog-recheck", cfg.CatalogRecheck,
		"how often a known version's catalog is read again in full")
	fs.Var((*byteSize)(&cfg.CacheSize), "cache-size",
		"disk budget for cached assets, e.g. 50GiB (0: 80% of the data disk); least recently used assets go first "+
			"(a cluster setting: the value a new cluster starts with)")
	fs.Var((*byteSize)(&cfg.LowSpaceWatermark), "low-space-watermark",
		"free space kept on the data disk, e.g. 10GiB (0: off): below it cached assets are evicted whatever "+
			"--cache-size says (a cluster setting: the value a new cluster starts with)")
	fs.IntVar(&cfg.BuildConcurrency, "build-concurrency", cfg.BuildConcurrency, "simultaneous builds on this node")
	fs.IntVar(&cfg.BuildQueue, "build-queue", cfg.BuildQueue,
		"builds that may wait for a slot on this node; past it a build is refused with 503 and Retry-After "+
			"(0: 64)")
	fs.DurationVar(&cfg.BuildTimeout, "build-timeout", cfg.BuildTimeout, "time limit of one build")
	fs.IntVar(&cfg.MaxConnections, "max-connections", cfg.MaxConnections,
		"open connections the API listener holds at once (0: unbounded); past it a new one waits for one to close")
	fs.DurationVar(&cfg.StallTimeout, "stall-timeout", cfg.StallTimeout,
		"a client that reads nothing of a response for this long is disconnected (0: never)")
	fs.Var((*byteSize)(&cfg.ClientRate), "client-rate",
		"bytes per second sent to one client address, e.g. 50MiB (0: uncapped; peers' copies are never capped)")
	fs.Var((*byteSize)(&cfg.MemberRate), "member-rate",
		"bytes per second this member sends to all clients together, e.g. 1GiB (0: uncapped)")
	buildNiceFlag(fs, &cfg.BuildNice)
	fs.StringVar(&cfg.SecureBoot.Key, "secureboot-key", cfg.SecureBoot.Key,
		"secure-boot signing key, PKCS#1 PEM (default: generated once per cluster)")
	fs.StringVar(&cfg.SecureBoot.Cert, "secureboot-cert", cfg.SecureBoot.Cert, "secure-boot signing certificate, PEM")
	fs.StringVar(&cfg.SecureBoot.PCRKey, "pcr-key", cfg.SecureBoot.PCRKey, "PCR signing key, PKCS#1 PEM")
	fs.StringVar(&cfg.CosignKey, "cosign-key", cfg.CosignKey,
		"ECDSA private key (PEM) installer images are signed with (default: generated once per cluster)")
	fs.Var((*pemFiles)(&cfg.InputPublicKeys), "input-public-key",
		"PEM public key the cosign signatures of release inputs must verify with (repeatable)")
	fs.StringSliceVar(&cfg.NetbootInterfaces, "netboot-interface", cfg.NetbootInterfaces,
		"answer network boot (proxyDHCP beside the site's DHCP server, TFTP) on this interface (repeatable; needs "+
			"CAP_NET_BIND_SERVICE and CAP_NET_RAW)")
	fs.StringVar(&cfg.IPXEDir, "ipxe-dir", cfg.IPXEDir,
		"directory of the iPXE binaries network boot hands out: undionly.kpxe, ipxe.efi, ipxe-arm64.efi")
	fs.Var((*onOff)(&cfg.InputVerifyOff), "input-verify",
		"on: refuse release inputs whose signatures do not verify; off: accept them (labs only, warned)")
}

// pemFiles is a repeatable flag reading a PEM file per value (comma-separated paths count as several, as a YAML
// list in the config file arrives).
type pemFiles [][]byte

func (p *pemFiles) String() string { return fmt.Sprintf("%d keys", len(*p)) }
func (p *pemFiles) Type() string   { return "file" }

func (p *pemFiles) Set(paths string) error {
	for path := range strings.SplitSeq(paths, ",") {
		raw, err := os.ReadFile(strings.TrimSpace(path))
		if err != nil {
			return err
		}

		*p = append(*p, raw)
	}

	return nil
}

// onOff is a flag spelled on or off that holds whether it is off.
type onOff bool

func (o *onOff) String() string {
	if *o {
		return "off"
	}

	return "on"
}

func (o *onOff) Type() string { return "on|off" }

func (o *onOff) Set(s string) error {
	switch s {
	case "on":
		*o = false
	case "off":
		*o = true
	default:
		return fmt.Errorf("want on or off, got %q", s)
	}

	return nil
}

// byteSize is a flag holding a size in bytes written with units ("50GiB", "200 MB", "0").
type byteSize int64

func (b *byteSize) String() string { return humanize.IBytes(uint64(*b)) }
func (b *byteSize) Type() string   { return "size" }

func (b *byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return err
	}

	*b = byteSize(n) // sizes beyond 8 EiB are not a concern

	return nil
}

// logFlags configure the logger.
type logFlags struct {
	level  string
	format string
}

func (l *logFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}

	opts := &slog.HandlerOptions{Level: level}

	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: want text or json, got %q", l.format)
	}
}

// applyConfigSources fills every flag not given on the command line from, in order of precedence, the
// environment (EDGEFACTORY_<FLAG>) and the YAML config file (a flat map whose keys are flag names). Unknown keys
// in the file are errors, so a typo cannot silently fall back to a default.
func applyConfigSources(cmd *cobra.Command, configFile string) error {
	var data []byte

	if configFile != "" {
		var err error
		if data, err = os.ReadFile(configFile); err != nil {
			return fmt.Errorf("read config file: %w", err)
		}
	}

	return applyConfig(cmd, configFile, data)
}

// applyConfig is applyConfigSources with the file's content already read (none: no file).
func applyConfig(cmd *cobra.Command, configFile string, data []byte) error {
	file := map[string]yaml.Node{}

	if err := yaml.Unmarshal(data, &file); err != nil {
		return fmt.Errorf("parse config file %s: %w", configFile, err)
	}

	fs := cmd.Flags()

	for key := range file {
		if f := fs.Lookup(key); f == nil || key == "config" {
			return fmt.Errorf("config file %s: unknown setting %q (settings are the flag names of %q)", configFile,
				key, cmd.CommandPath())
		}
	}

	var err error

	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "config" {
			return
		}

		env := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("environment %s: %w", env, serr)
			}

			return
		}

		if v, ok := file[f.Name]; ok {
			value, verr := fileValue(&v)
			if verr == nil {
				verr = fs.Set(f.Name, value)
			}

			if verr != nil {
				err = fmt.Errorf("config file %s: %s: %w", configFile, f.Name, verr)
			}
		}
	})

	return err
}

// fileValue renders a YAML value as the flag syntax expects it (lists comma-joined). Scalars are taken as written,
// so `min-talos-version: 1.10` stays 1.10 (not the number 1.1); a key with no value is an error rather than a
// setting of "<nil>" (a templated file whose variable came out empty must not start a node advertising nonsense).
func fileValue(v *yaml.Node) (string, error) {
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		return "", errors.New("no value (give one, or remove the line to keep the default)")
	case v.Kind == yaml.ScalarNode:
		return v.Value, nil
	case v.Kind == yaml.SequenceNode:
		parts := make([]string, len(v.Content))

		for i, item := range v.Content {
			if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
				return "", fmt.Errorf("line %d: list items must be plain values", item.Line)
			}

			parts[i] = item.Value
		}

		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("line %d: want a value or a list of values", v.Line)
	}
}

// buildNiceFlag is --build-nice, on serve and dev.
func buildNiceFlag(fs *pflag.FlagSet, nice *int) {
	fs.IntVar(nice, "build-nice", *nice,
		"CPU niceness of builds and the tools they run (0-19; serving keeps the node's priority)")
}
