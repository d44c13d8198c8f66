package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/blang/semver/v4"
	"go.etcd.io/bbolt"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/internal/digest"
)

// CommandVersion is the only command encoding this build applies. A change to what an existing field means, or a new
// field that changes how a command is applied, must bump it: every node applies the same log, so a node must refuse
// what it does not fully understand rather than apply it differently.
const CommandVersion = 1

// MaxCommandSize bounds one encoded command. The log carries metadata only; large entries stall heartbeats.
const MaxCommandSize = 1 << 20

// Op names a state change.
type Op string

// The state changes the FSM knows.
const (
	OpPutSchematic   Op = "PutSchematic"   // write-once: an existing ID keeps its bytes
	OpPutCatalog     Op = "PutCatalog"     // replace one version's catalog
	OpRemoveVersion  Op = "RemoveVersion"  // delete one version's catalog
	OpPutCatalogMeta Op = "PutCatalogMeta" // replace the catalog meta record
	OpPutAsset       Op = "PutAsset"       // first committed record for a key wins
	OpPutSetting     Op = "PutSetting"     // set (overwrite) a cluster setting
	OpInitSetting    Op = "InitSetting"    // set a cluster setting only if absent; first committed value wins
	OpDeleteSetting  Op = "DeleteSetting"  // remove a cluster setting; removing an absent one is a no-op
	// OpPatchSetting merges a JSON object into a JSON setting (RFC 7386: a null member removes one), atomically: two
	// members changing different fields at once both land.
	OpPatchSetting Op = "PatchSetting"
)

var (
	// ErrInvalidCommand marks a command that fails validation; it never reaches the log.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrRejected marks a command the state machine refused after commit (see Result.Error).
	ErrRejected = errors.New("command rejected by state machine")
	// ErrConflict marks a write-once value that already exists with different content.
	ErrConflict = errors.New("conflicts with the committed value")
)

// Command is one replicated state change, JSON encoded into the Raft log. Only the payload fields of its Op are set.
// It is exported so a follower can forward it to the leader (EncodeCommand on the follower, DecodeCommand and
// Store.ApplyCommand on the leader).
type Command struct {
	V  int `json:"v"`
	Op Op  `json:"op"`

	ID   string `json:"id,omitempty"`   // PutSchematic: schematic ID (64 lowercase hex)
	YAML []byte `json:"yaml,omitempty"` // PutSchematic: canonical YAML

	Release *release.Version `json:"release,omitempty"` // PutCatalog
	Version string           `json:"version,omitempty"` // RemoveVersion: "v"-prefixed semver

	Meta  *CatalogMeta `json:"meta,omitempty"`  // PutCatalogMeta
	Asset *AssetRecord `json:"asset,omitempty"` // PutAsset

	Key   string `json:"key,omitempty"`   // PutSetting, InitSetting, DeleteSetting, PatchSetting
	Value []byte `json:"value,omitempty"` // PutSetting, InitSetting; PatchSetting: the merge patch
}

// CatalogMeta is the one record describing the replicated catalog as a whole.
type CatalogMeta struct {
	// Broken lists versions ("v"-prefixed) the upstream registry lists but that must not be served.
	Broken []string `json:"broken,omitempty"`
	// LastSync is when the leader last completed a catalog sync with the upstream registry.
	LastSync time.Time `json:"lastSync"`
}

// AssetRecord is the asset index entry for one recipe: what its bytes must hash to and where they came from.
type AssetRecord struct {
	Key       string `json:"key"`    // recipe key, 64 lowercase hex
	Digest    string `json:"digest"` // "sha256:<hex>" of the asset bytes
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
	Filename  string `json:"filename"`
	Builder   string `json:"builder"` // node name that built it
	// Profile is the ID of the build profile it was built with (docs/architecture.md §16); empty in records older
	// than build profiles, and for bytes made by no build (imported, cached source images).
	Profile string    `json:"profile,omitempty"`
	Created time.Time `json:"created"`
	// Blobs are further content this asset consists of (an installer image's manifests, configs, layers and
	// signature), so any node can find a recipe — and the members holding its bytes — by one of its blobs.
	Blobs []Blob `json:"blobs,omitempty"`
}

// Blob is one piece of content-addressed data an asset consists of.
type Blob struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
}

// Find returns the blob with digest d: the record's own bytes, or one of its Blobs.
func (a AssetRecord) Find(d string) (Blob, bool) {
	if a.Digest == d {
		return Blob{Digest: a.Digest, Size: a.Size, MediaType: a.MediaType}, true
	}

	for _, b := range a.Blobs {
		if b.Digest == d {
			return b, true
		}
	}

	return Blob{}, false
}

// Result is the state machine's answer to one committed command. It is JSON friendly so a leader can return it to a
// follower that forwarded the command.
type Result struct {
	Index   uint64 `json:"index"`   // log index the command committed at
	Changed bool   `json:"changed"` // state changed (false for a repeat or a lost first-wins race)
	// Conflict: a write-once or first-wins value already existed with different content and was kept.
	Conflict bool         `json:"conflict,omitempty"`
	Asset    *AssetRecord `json:"asset,omitempty"` // PutAsset: the record stored under the key
	Value    []byte       `json:"value,omitempty"` // InitSetting, PatchSetting: the value stored under the key
	Error    string       `json:"error,omitempty"` // why the state machine refused the command
}

// Err returns the refusal carried by r as an error wrapping ErrRejected, or nil.
func (r Result) Err() error {
	if r.Error == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRejected, r.Error)
}

// EncodeCommand validates c and returns its log encoding.
func EncodeCommand(c Command) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	if len(data) > MaxCommandSize {
		return nil, fmt.Errorf("%w: %s command is %d bytes, limit %d", ErrInvalidCommand, c.Op, len(data), MaxCommandSize)
	}
	return data, nil
}

// DecodeCommand parses and validates a command encoded by EncodeCommand.
func DecodeCommand(data []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return Command{}, fmt.Errorf("%w: decode: %w", ErrInvalidCommand, err)
	}
	if err := c.Validate(); err != nil {
		return Command{}, err
	}
	return c, nil
}

// Validate reports whether c is a well-formed command of a known version and op.
func (c Command) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidCommand, c.Op, err)
	}
	return nil
}

func (c Command) validate() error {
	if c.V != CommandVersion {
		return fmt.Errorf("unsupported command version %d (want %d)", c.V, CommandVersion)
	}
	switch c.Op {
	case OpPutSchematic:
		if err := checkHex64(c.ID); err != nil {
			return fmt.Errorf("schematic id: %w", err)
		}
		if len(c.YAML) == 0 {
			return errors.New("empty schematic")
		}
	case OpPutCatalog:
		if c.Release == nil {
			return errors.New("missing release")
		}
		return checkVersion(c.Release.Version)
	case OpRemoveVersion:
		return checkVersion(c.Version)
	case OpPutCatalogMeta:
		if c.Meta == nil {
			return errors.New("missing meta")
		}
	case OpPutAsset:
		if c.Asset == nil {
			return errors.New("missing asset record")
		}
		return c.Asset.validate()
	case OpPutSetting, OpInitSetting, OpDeleteSetting, OpPatchSetting:
		if c.Key == "" || len(c.Key) > 1024 {
			return fmt.Errorf("setting key length %d out of range 1..1024", len(c.Key))
		}
		if c.Op == OpPatchSetting && !isJSONObject(c.Value) {
			return errors.New("a setting patch is a JSON object")
		}
	default:
		return fmt.Errorf("unknown op %q", c.Op)
	}
	return nil
}

// isJSONObject reports whether b is one well-formed JSON object.
func isJSONObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}

func (a *AssetRecord) validate() error {
	if err := checkHex64(a.Key); err != nil {
		return fmt.Errorf("recipe key: %w", err)
	}
	if err := checkDigest(a.Digest); err != nil {
		return err
	}
	if a.Size < 0 {
		return fmt.Errorf("negative size %d", a.Size)
	}
	for _, b := range a.Blobs {
		if err := checkDigest(b.Digest); err != nil {
			return fmt.Errorf("blob: %w", err)
		}
		if b.Size < 0 {
			return fmt.Errorf("blob %s: negative size %d", b.Digest, b.Size)
		}
	}
	return nil
}

func checkHex64(s string) error {
	if err := digest.CheckHex(s); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}

func checkDigest(d string) error { return digest.Check(d) }

// checkVersion checks a catalog version, which is also the catalog's bbolt key. bbolt refuses keys over MaxKeySize
// with an error the state machine can only take for a storage failure, so a longer version, valid semver or not,
// would halt every member replaying the entry. The bound is bbolt's own, not a tighter one: every command that used to
// apply still does, so logs written before the check replay as they did.
func checkVersion(v string) error {
	if len(v) > bbolt.MaxKeySize {
		return fmt.Errorf("version of %d bytes, limit %d", len(v), bbolt.MaxKeySize)
	}
	rest, ok := strings.CutPrefix(v, "v")
	if !ok {
		return fmt.Errorf("version %q lacks the v prefix", v)
	}
	if _, err := semver.Parse(rest); err != nil {
		return fmt.Errorf("version %q: %w", v, err)
	}
	return nil
}
