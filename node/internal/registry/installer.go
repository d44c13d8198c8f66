package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/edgefactory/edgefactory/frontends/oci"
	"github.com/edgefactory/edgefactory/imager/recipe"
	digests "github.com/edgefactory/edgefactory/internal/digest"
	"github.com/edgefactory/edgefactory/raftstore"
)

// Assembling installer images (oci.go says what they are) and assembling again, under the recorded digest, those
// whose bytes were lost.

// installerImage finds or assembles the installer index of p. A recorded index whose bytes are lost (lost says so,
// or a blob of it is known to be gone) is assembled again, here, under its recorded digest.
func (reg *Registry) installerImage(ctx context.Context, p installerPlan, lost bool) (raftstore.AssetRecord, error) {
	rec, recorded, err := reg.store.Asset(p.key)
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	if recorded && !lost && !reg.installerLost(rec) {
		return rec, nil
	}

	res, err, _ := reg.flight.Do("installer:"+p.key, func() (any, error) {
		ctx := context.WithoutCancel(ctx)
		if recorded {
			return reg.reassembleInstaller(ctx, p, rec)
		}

		return reg.assembleInstaller(ctx, p)
	})
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	return res.(raftstore.AssetRecord), nil //nolint:forcetypeassert // both return records
}

// installerLost reports whether a blob of an installer image is known to be gone from the cluster.
func (reg *Registry) installerLost(rec raftstore.AssetRecord) bool {
	if reg.assets.Lost(rec.Digest) {
		return true
	}

	for _, b := range rec.Blobs {
		if reg.assets.Lost(b.Digest) {
			return true
		}
	}

	return false
}

// assembleInstaller builds the index from the per-architecture installer tarballs and commits its record.
func (reg *Registry) assembleInstaller(ctx context.Context, p installerPlan) (raftstore.AssetRecord, error) {
	start := time.Now()

	index, blobs, err := reg.storeInstallerIndex(ctx, p)
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	rec, err := raftstore.PutAsset(ctx, reg.leader, raftstore.AssetRecord{
		Key: p.key, Digest: digests.Of(index), Size: int64(len(index)), MediaType: oci.MediaTypeOCIIndex,
		Filename: p.name, Builder: reg.self, Created: time.Now().UTC(), Blobs: blobs,
	})
	if err != nil {
		return raftstore.AssetRecord{}, fmt.Errorf("record installer image %s: %w", p.name, err)
	}

	reg.log.Info("installer image assembled", "image", p.name, "index", rec.Digest,
		"duration", time.Since(start).Round(time.Millisecond))

	return rec, nil
}

// reassembleInstaller stores again, here, every blob of a recorded installer image whose bytes were lost. The
// record stays as it is (no Raft write: this works without a leader); an index digest once served keeps its
// meaning, so bytes that do not hash to the recorded digest are refused, not served.
func (reg *Registry) reassembleInstaller(ctx context.Context, p installerPlan, rec raftstore.AssetRecord) (raftstore.AssetRecord, error) {
	start := time.Now()

	index, blobs, err := reg.storeInstallerIndex(ctx, p)
	if err != nil {
		return raftstore.AssetRecord{}, err
	}

	if got := digests.Of(index); got != rec.Digest {
		return raftstore.AssetRecord{}, fmt.Errorf("installer image %s: its recorded index %s is lost and "+
			"assembling it again gives %s (an input changed, or a build is not reproducible)", p.name, rec.Digest, got)
	}

	reg.assets.Found(rec.Digest)

	for _, b := range blobs {
		reg.assets.Found(b.Digest)
	}

	reg.log.Warn("installer image assembled again: its bytes were lost", "image", p.name, "index", rec.Digest,
		"duration", time.Since(start).Round(time.Millisecond))

	return rec, nil
}

// storeInstallerIndex stores every blob of the installer image of p in the CAS (the tarballs' manifests, configs
// and layers, and the index) and returns the index and the blobs under it.
func (reg *Registry) storeInstallerIndex(ctx context.Context, p installerPlan) ([]byte, []raftstore.Blob, error) {
	var (
		manifests []map[string]any
		blobs     []raftstore.Blob
	)

	for _, r := range p.recipes {
		desc, parts, err := reg.storeInstallerTarball(ctx, r)
		if err != nil {
			return nil, nil, fmt.Errorf("installer image %s (%s): %w", p.name, r.Asset.Arch, err)
		}

		manifests = append(manifests, desc)
		blobs = append(blobs, parts...)
	}

	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeOCIIndex,
		"manifests":     manifests,
	})
	if err != nil {
		return nil, nil, err
	}

	if _, err := reg.assets.Put(index); err != nil {
		return nil, nil, err
	}

	return index, blobs, nil
}

// storeInstallerTarball stores the manifest, config and layers of one installer tarball in the CAS and returns the
// index entry for it and the blobs it added.
func (reg *Registry) storeInstallerTarball(ctx context.Context, r recipe.Recipe) (map[string]any, []raftstore.Blob, error) {
	a, err := reg.assets.Complete(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()

	file := a.File()
	img, err := tarball.Image(func() (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(file, 0, a.Size())), nil
	}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read installer tarball: %w", err)
	}

	manifest, err := img.RawManifest()
	if err != nil {
		return nil, nil, err
	}

	mediaType, err := img.MediaType()
	if err != nil {
		return nil, nil, err
	}

	config, err := img.RawConfigFile()
	if err != nil {
		return nil, nil, err
	}

	layers, err := img.Layers()
	if err != nil {
		return nil, nil, err
	}

	var blobs []raftstore.Blob

	for _, l := range layers {
		b, err := reg.putLayer(ctx, l)
		if err != nil {
			return nil, nil, err
		}

		blobs = append(blobs, b)
	}

	configDigest, err := reg.assets.Put(config)
	if err != nil {
		return nil, nil, err
	}

	manifestDigest, err := reg.assets.Put(manifest)
	if err != nil {
		return nil, nil, err
	}

	cfgFile, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}

	blobs = append(blobs,
		raftstore.Blob{Digest: configDigest, Size: int64(len(config)), MediaType: "application/vnd.docker.container.image.v1+json"},
		raftstore.Blob{Digest: manifestDigest, Size: int64(len(manifest)), MediaType: string(mediaType)})

	return map[string]any{
		"mediaType": string(mediaType),
		"digest":    manifestDigest,
		"size":      len(manifest),
		"platform":  map[string]string{"os": "linux", "architecture": cfgFile.Architecture},
	}, blobs, nil
}

// putLayer stores a layer's compressed bytes, verified against its digest.
func (reg *Registry) putLayer(ctx context.Context, l v1.Layer) (raftstore.Blob, error) {
	d, err := l.Digest()
	if err != nil {
		return raftstore.Blob{}, err
	}

	size, err := l.Size()
	if err != nil {
		return raftstore.Blob{}, err
	}

	mt, err := l.MediaType()
	if err != nil {
		return raftstore.Blob{}, err
	}

	b := raftstore.Blob{Digest: d.String(), Size: size, MediaType: string(mt)}
	if reg.assets.Has(b.Digest) {
		return b, nil
	}

	rc, err := l.Compressed()
	if err != nil {
		return raftstore.Blob{}, err
	}

	rec := raftstore.AssetRecord{Digest: b.Digest, Size: size, MediaType: b.MediaType}
	if err := reg.assets.Ingest(rec, "installer layer", rc).Stored(ctx); err != nil {
		return raftstore.Blob{}, fmt.Errorf("store layer %s: %w", b.Digest, err)
	}

	return b, nil
}
