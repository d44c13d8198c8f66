package raftstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/blang/semver/v4"
	"go.etcd.io/bbolt"

	"github.com/edgefactory/edgefactory/imager/release"
)

// Reads are served from this node's state file without contacting the leader; see the package guarantee.

// Kinds of record Record reads: one per kind of immutable or whole-value record a member may lack while the log
// brings it.
const (
	RecordSchematic = "schematic" // by schematic ID: the canonical YAML
	RecordAsset     = "asset"     // by recipe key: the AssetRecord as JSON
	RecordCatalog   = "catalog"   // by version (vX.Y.Z): the release.Version as JSON
)

// ErrRecordKind is returned by Record for a kind it does not know.
var ErrRecordKind = errors.New("unknown record kind")

// Record returns one record of kind by its ID, as stored (see the Record kinds). It lets a member that lacks a
// record read it from the leader (peer API) without the leader knowing what the record means.
func (s *Store) Record(kind, id string) ([]byte, bool, error) {
	bucket, ok := map[string][]byte{RecordSchematic: bucketSchematics, RecordAsset: bucketAssets,
		RecordCatalog: bucketCatalog}[kind]
	if !ok {
		return nil, false, fmt.Errorf("%w %q", ErrRecordKind, kind)
	}
	return s.get(bucket, []byte(id))
}

// Schematic returns the canonical YAML stored under a schematic ID.
func (s *Store) Schematic(id string) ([]byte, bool, error) {
	return s.get(bucketSchematics, []byte(id))
}

// Catalog returns the catalog of one Talos version.
func (s *Store) Catalog(version string) (release.Version, bool, error) {
	return getJSON[release.Version](s, bucketCatalog, []byte(version))
}

// Versions lists the Talos versions with a catalog, in ascending semver order.
func (s *Store) Versions() ([]string, error) {
	type entry struct {
		name string
		ver  semver.Version
		err  error
	}
	var list []entry
	err := s.fsm.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCatalog).ForEach(func(k, _ []byte) error {
			v, err := semver.ParseTolerant(string(k))
			list = append(list, entry{name: string(k), ver: v, err: err})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	// Commands only admit valid versions; anything unparsable sorts last by name rather than failing the list.
	slices.SortFunc(list, func(a, b entry) int {
		switch {
		case a.err != nil && b.err != nil:
			return strings.Compare(a.name, b.name)
		case a.err != nil:
			return 1
		case b.err != nil:
			return -1
		}
		return a.ver.Compare(b.ver)
	})
	names := make([]string, len(list))
	for i, e := range list {
		names[i] = e.name
	}
	return names, nil
}

// CatalogMeta returns the catalog meta record.
func (s *Store) CatalogMeta() (CatalogMeta, bool, error) {
	return getJSON[CatalogMeta](s, bucketCatalogMeta, keyCatalogMeta)
}

// Asset returns the asset index record of a recipe key.
func (s *Store) Asset(key string) (AssetRecord, bool, error) {
	return getJSON[AssetRecord](s, bucketAssets, []byte(key))
}

// AssetByDigest returns a record whose asset digest or blob list contains digest ("sha256:<hex>"). A blob shared by
// several recipes resolves to the first recorded one; blobs are content-addressed, so any holder serves.
func (s *Store) AssetByDigest(digest string) (AssetRecord, bool, error) {
	key, found, err := s.get(bucketAssetDigests, []byte(digest))
	if err != nil || !found {
		return AssetRecord{}, false, err
	}
	return s.Asset(string(key))
}

// Setting returns a cluster setting.
func (s *Store) Setting(key string) ([]byte, bool, error) {
	return s.get(bucketSettings, []byte(key))
}

// Settings returns every cluster setting whose key starts with prefix, by key.
func (s *Store) Settings(prefix string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.fsm.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketSettings).Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			out[string(k)] = nonNil(bytes.Clone(v))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read settings %s*: %w", prefix, err)
	}
	return out, nil
}

func (s *Store) get(bucket, key []byte) ([]byte, bool, error) {
	var out []byte
	var found bool
	err := s.fsm.view(func(tx *bbolt.Tx) error {
		v, ok := lookup(tx.Bucket(bucket), key)
		out, found = bytes.Clone(v), ok
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read %s/%s: %w", bucket, key, err)
	}
	if found && out == nil {
		out = []byte{}
	}
	return out, found, nil
}

func getJSON[T any](s *Store, bucket, key []byte) (T, bool, error) {
	var v T
	data, found, err := s.get(bucket, key)
	if err != nil || !found {
		return v, false, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, false, fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return v, true, nil
}

// CatalogGeneration changes whenever the catalog (or its meta record) may have changed; a reader that caches decoded
// catalogs drops them when it moves.
func (s *Store) CatalogGeneration() uint64 { return s.fsm.catalogGen.Load() }
