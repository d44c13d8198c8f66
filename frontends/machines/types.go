// Package machines serves the network-boot machine table (docs/api.md §11): the profiles that say which Talos a
// machine boots, at /machines/profiles[/{name}], and the last boots the members saw, at /machines/seen. Profiles are
// read and written as JSON or YAML; the node validates and replicates them, this package only speaks the wire.
package machines

import (
	"context"
	"time"
)

// Profile says what the machines its selectors match boot. The JSON names are the API contract.
type Profile struct {
	// Name is the profile's key; set from the URL, ignored in a request body.
	Name      string    `json:"name,omitempty" yaml:"name,omitempty"`
	Selectors Selectors `json:"selectors" yaml:"selectors"`
	// Schematic is a schematic ID the cluster knows; Version a Talos version in its catalog.
	Schematic string `json:"schematic" yaml:"schematic"`
	Version   string `json:"version" yaml:"version"`
	// Platform defaults to "metal".
	Platform        string   `json:"platform,omitempty" yaml:"platform,omitempty"`
	SecureBoot      bool     `json:"secureboot" yaml:"secureboot"`
	ExtraKernelArgs []string `json:"extraKernelArgs,omitempty" yaml:"extraKernelArgs,omitempty"`
}

// Selectors match a machine; every selector given must match. A profile without any is the default profile.
type Selectors struct {
	MAC      string `json:"mac,omitempty" yaml:"mac,omitempty"`
	UUID     string `json:"uuid,omitempty" yaml:"uuid,omitempty"`
	Serial   string `json:"serial,omitempty" yaml:"serial,omitempty"`
	Hostname string `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	// Subnet is a CIDR the machine's address is in.
	Subnet string `json:"subnet,omitempty" yaml:"subnet,omitempty"`
	// Labels are matched against the free parameters of the boot URL (`/pxe/boot.ipxe?rack=r1`).
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// Empty reports whether s matches every machine.
func (s Selectors) Empty() bool {
	return s.MAC == "" && s.UUID == "" && s.Serial == "" && s.Hostname == "" && s.Subnet == "" && len(s.Labels) == 0
}

// Boot is one boot a member saw: a DHCP answer or a profile script served.
type Boot struct {
	Time    time.Time `json:"time"`
	MAC     string    `json:"mac"`
	Member  string    `json:"member"`
	Profile string    `json:"profile,omitempty"`
	// Stage is "dhcp" (the proxyDHCP answer) or "script" (the iPXE script).
	Stage string `json:"stage"`
	// Served is what the machine was given: a boot file, a script's kernel URL, or "no profile".
	Served string `json:"served"`
	Arch   string `json:"arch,omitempty"`
	UUID   string `json:"uuid,omitempty"`
	IP     string `json:"ip,omitempty"`
}

// Table is what the node provides. Errors are classified as the frontends package describes (an invalid profile
// is Invalid, an unknown name NotFound).
type Table interface {
	Profiles(ctx context.Context) ([]Profile, error)
	Profile(ctx context.Context, name string) (Profile, error)
	// PutProfile validates and stores p under name and returns it as stored (normalised); created reports a new
	// name.
	PutProfile(ctx context.Context, name string, p Profile) (stored Profile, created bool, err error)
	DeleteProfile(ctx context.Context, name string) error
	// Seen lists the last boots the cluster's live members saw, newest first.
	Seen(ctx context.Context) ([]Boot, error)
	// LocalSeen lists the last boots this member saw (what it answers to ?member=self), newest first.
	LocalSeen() []Boot
}
