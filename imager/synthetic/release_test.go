package synthetic_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blang/semver/v4"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v4"

	"github.com/edgefactory/edgefactory/imager/synthetic"
	"github.com/edgefactory/edgefactory/imager/synthetic/synthetictest"
)

// parts uses the real parts when `make deps` fetched them, stand-ins otherwise: nothing here boots.
func parts(t *testing.T) *synthetic.Parts {
	t.Helper()

	p, err := synthetic.LoadParts(synthetic.DefaultPartsDir(), nil)
	require.NoError(t, err)

	return p
}

type tarFile struct {
	typ  byte
	mode int64
	data []byte
	link string
}

// flatten returns the files of an image's flattened filesystem, keyed by path without "./" or trailing "/".
func flatten(t *testing.T, img v1.Image) map[string]tarFile {
	t.Helper()

	rc := mutate.Extract(img)
	defer rc.Close()

	return readTar(t, rc)
}

func readTar(t *testing.T, r io.Reader) map[string]tarFile {
	t.Helper()

	files := map[string]tarFile{}
	tr := tar.NewReader(r)

	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}

		require.NoError(t, err)

		data, err := io.ReadAll(tr)
		require.NoError(t, err)

		files[strings.TrimSuffix(path.Clean(h.Name), "/")] = tarFile{typ: h.Typeflag, mode: h.Mode, data: data, link: h.Linkname}
	}
}

// layerOrderOK checks that every entry of every layer comes after its parent directory.
func layerOrderOK(t *testing.T, img v1.Image) {
	t.Helper()

	layers, err := img.Layers()
	require.NoError(t, err)

	for _, l := range layers {
		rc, err := l.Uncompressed()
		require.NoError(t, err)

		seen := map[string]bool{".": true}
		tr := tar.NewReader(rc)

		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}

			require.NoError(t, err)

			p := path.Clean(h.Name)
			require.True(t, seen[path.Dir(p)], "%s comes before its parent directory", p)
			require.Equal(t, synthetic.Epoch, h.ModTime.UTC(), "%s timestamp", p)

			seen[p] = true
		}

		require.NoError(t, rc.Close())
	}
}

// pull fetches every platform image of a pushed index and checks the index lists exactly amd64 and arm64.
func pull(t *testing.T, addr string, p synthetic.Pushed) map[string]v1.Image {
	t.Helper()

	ref, err := name.ParseReference(p.Ref(addr))
	require.NoError(t, err)

	idx, err := remote.Index(ref)
	require.NoError(t, err, p.Ref(addr))

	d, err := idx.Digest()
	require.NoError(t, err)
	require.Equal(t, p.Digest, d.String(), p.Ref(addr))

	im, err := idx.IndexManifest()
	require.NoError(t, err)

	imgs := map[string]v1.Image{}

	for _, m := range im.Manifests {
		require.NotNil(t, m.Platform, "%s: index entry without platform", p.Ref(addr))
		require.Equal(t, "linux", m.Platform.OS)
		require.Empty(t, m.ArtifactType, "plain images, like docker-built ones")
		require.Equal(t, p.Platforms[m.Platform.Architecture], m.Digest.String())

		img, err := idx.Image(m.Digest)
		require.NoError(t, err)

		cf, err := img.ConfigFile()
		require.NoError(t, err)
		require.Equal(t, m.Platform.Architecture, cf.Architecture)
		require.True(t, cf.Created.Equal(synthetic.Epoch))

		imgs[m.Platform.Architecture] = img
	}

	require.ElementsMatch(t, []string{"amd64", "arm64"}, slices.Collect(func(yield func(string) bool) {
		for a := range imgs {
			if !yield(a) {
				return
			}
		}
	}))

	return imgs
}

func TestReleaseLayout(t *testing.T) {
	srv := synthetictest.Start(t, synthetic.Options{Parts: parts(t)})
	m := srv.Manifest

	require.Len(t, m.Versions, len(synthetic.DefaultVersions))
	// per version: imager, installer-base, 2 catalogs, talosctl-all, hello-world-service, i915; shared: amd-ucode,
	// the overlay; cluster images: 9 for v1.12.0 and 10 for v1.13.0 (kube-network-policies), none shared (every
	// component has another tag in each)
	require.Len(t, m.Images(), 5*2+2*2+2+9+10)

	// each image's tag and its signature's
	tags, err := crane.ListTags(srv.Addr + "/siderolabs/imager")
	require.NoError(t, err)

	want := slices.Clone(synthetic.DefaultVersions)
	for _, vi := range m.Versions {
		want = append(want, vi.Imager.Signature.Tag)
	}

	require.ElementsMatch(t, want, tags)

	for _, vi := range m.Versions {
		t.Run(vi.Version, func(t *testing.T) {
			for arch, img := range pull(t, srv.Addr, vi.Imager) {
				files := flatten(t, img)
				for _, a := range synthetic.Architectures {
					for _, f := range []string{"vmlinuz", "initramfs.xz", "systemd-boot.efi", "systemd-stub.efi"} {
						require.Contains(t, files, "usr/install/"+a+"/"+f, "imager %s image", arch)
					}
				}
			}

			for arch, img := range pull(t, srv.Addr, vi.InstallerBase) {
				layers, err := img.Layers()
				require.NoError(t, err)
				require.Len(t, layers, 2, "installer-base has a tools layer and an artifacts layer")

				files := flatten(t, img)
				require.Equal(t, int64(0o755), files["usr/bin/installer"].mode)
				require.Contains(t, files, "bin/busybox")
				require.Contains(t, files, "usr/install/"+arch+"/placeholder")
				layerOrderOK(t, img)
			}

			for _, ext := range vi.Extensions {
				for _, img := range pull(t, srv.Addr, ext) {
					checkExtension(t, img, vi.Version)
				}
			}

			for _, img := range pull(t, srv.Addr, vi.Overlays[0]) {
				files := flatten(t, img)
				require.Contains(t, files, "profiles/rpi_generic.yaml")
				require.Contains(t, files, "artifacts/arm64/u-boot/rpi_generic/u-boot.bin")
				require.Equal(t, int64(0o755), files["installers/rpi_generic"].mode)
				layerOrderOK(t, img)
			}

			checkExtensionsCatalog(t, srv.Addr, vi)
			checkOverlaysCatalog(t, srv.Addr, vi)
			checkTalosctl(t, srv.Addr, vi)
			checkCluster(t, srv.Addr, m.Namespace, vi)
		})
	}
}

// checkTalosctl: like the real talosctl-all image, each platform image holds the nine talosctl binaries at its root,
// one layer each, and nothing else; each stand-in says what it is.
func checkTalosctl(t *testing.T, addr string, vi synthetic.VersionImages) {
	t.Helper()

	require.NotNil(t, vi.Talosctl, "versions from v1.11.0 have talosctl-all")
	require.Equal(t, "siderolabs/talosctl-all", vi.Talosctl.Repository)
	require.Equal(t, vi.Version, vi.Talosctl.Tag)

	for arch, img := range pull(t, addr, *vi.Talosctl) {
		layers, err := img.Layers()
		require.NoError(t, err)
		require.Len(t, layers, len(synthetic.TalosctlFiles), "%s: one layer per binary", arch)

		files := flatten(t, img)
		require.Len(t, files, len(synthetic.TalosctlFiles), "%s: only the binaries", arch)

		for _, f := range synthetic.TalosctlFiles {
			require.Equal(t, synthetic.TalosctlContent(vi.Version, f), files[f].data, "%s %s", arch, f)
			require.Contains(t, string(files[f].data), "synthetic talosctl "+vi.Version)
			require.Equal(t, int64(0o755), files[f].mode)
		}
	}

	require.Contains(t, string(synthetic.TalosctlContent(vi.Version, "talosctl-windows-arm64.exe")), "for windows/arm64")
}

// TestReleaseTalosctlSince: versions before v1.11.0 have no talosctl-all image, as upstream.
func TestReleaseTalosctlSince(t *testing.T) {
	srv := synthetictest.Start(t, synthetic.Options{Parts: synthetic.StandInParts(), Versions: []string{"v1.10.0", "v1.11.0"}})

	old, ok := srv.Manifest.Version("v1.10.0")
	require.True(t, ok)
	require.Nil(t, old.Talosctl)

	current, ok := srv.Manifest.Version("v1.11.0")
	require.True(t, ok)
	require.NotNil(t, current.Talosctl)

	tags, err := crane.ListTags(srv.Addr + "/siderolabs/talosctl-all")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"v1.11.0", current.Talosctl.Signature.Tag}, tags, "the image and its signature")
}

// checkExtension: root holds exactly manifest.yaml and rootfs/, and the manifest accepts the version.
func checkExtension(t *testing.T, img v1.Image, version string) {
	t.Helper()

	files := flatten(t, img)

	var top []string

	for p := range files {
		if !strings.Contains(p, "/") {
			top = append(top, p)
		}
	}

	require.ElementsMatch(t, []string{"manifest.yaml", "rootfs"}, top)
	layerOrderOK(t, img)

	var mf struct {
		Metadata struct {
			Name          string `yaml:"name"`
			Compatibility struct {
				Talos struct {
					Version string `yaml:"version"`
				} `yaml:"talos"`
			} `yaml:"compatibility"`
		} `yaml:"metadata"`
	}

	require.NoError(t, yaml.Unmarshal(files["manifest.yaml"].data, &mf))
	require.NotEmpty(t, mf.Metadata.Name)

	constraint, err := semver.ParseRange(strings.ReplaceAll(mf.Metadata.Compatibility.Talos.Version, "v", ""))
	require.NoError(t, err)

	for _, v := range synthetic.DefaultVersions {
		require.True(t, constraint(semver.MustParse(strings.TrimPrefix(v, "v"))), "%s accepts %s", mf.Metadata.Name, v)
	}
}

func catalogFiles(t *testing.T, addr string, p synthetic.Pushed) map[string]tarFile {
	t.Helper()

	imgs := pull(t, addr, p)

	return flatten(t, imgs["amd64"])
}

func checkExtensionsCatalog(t *testing.T, addr string, vi synthetic.VersionImages) {
	t.Helper()

	files := catalogFiles(t, addr, vi.ExtensionsCatalog)

	var descs map[string]struct {
		Author      string `yaml:"author"`
		Description string `yaml:"description"`
	}

	require.NoError(t, yaml.Unmarshal(files["descriptions.yaml"].data, &descs))

	lines := strings.Split(strings.TrimSpace(string(files["image-digests"].data)), "\n")
	require.Len(t, lines, len(vi.Extensions))

	var names []string

	for i, line := range lines {
		require.True(t, strings.HasPrefix(line, "ghcr.io/siderolabs/"), line)
		require.Equal(t, vi.Extensions[i].Ref("ghcr.io")+"@"+vi.Extensions[i].Digest, line)
		require.NotEmpty(t, descs[line].Description, line)

		// the line resolves in the registry once ghcr.io is replaced, by tag and by digest, to the same index
		local := addr + strings.TrimPrefix(line, "ghcr.io")
		tagRef, digest, _ := strings.Cut(local, "@")

		got, err := crane.Digest(tagRef)
		require.NoError(t, err)
		require.Equal(t, digest, got)

		_, err = crane.Manifest(tagRef[:strings.LastIndex(tagRef, ":")] + "@" + digest)
		require.NoError(t, err)

		names = append(names, strings.Split(strings.TrimPrefix(line, "ghcr.io/"), ":")[0])
	}

	require.Equal(t, []string{"siderolabs/amd-ucode", "siderolabs/hello-world-service", "siderolabs/i915"}, names)
}

func checkOverlaysCatalog(t *testing.T, addr string, vi synthetic.VersionImages) {
	t.Helper()

	files := catalogFiles(t, addr, vi.OverlaysCatalog)

	var doc struct {
		Overlays []struct {
			Name   string `yaml:"name"`
			Image  string `yaml:"image"`
			Digest string `yaml:"digest"`
		} `yaml:"overlays"`
	}

	require.NoError(t, yaml.Unmarshal(files["overlays.yaml"].data, &doc))
	require.Len(t, doc.Overlays, 1)
	require.Equal(t, "rpi_generic", doc.Overlays[0].Name)
	require.Equal(t, "ghcr.io/siderolabs/sbc-raspberrypi:v0.1.7", doc.Overlays[0].Image)

	got, err := crane.Digest(addr + "/siderolabs/sbc-raspberrypi@" + doc.Overlays[0].Digest)
	require.NoError(t, err)
	require.Equal(t, doc.Overlays[0].Digest, got)
}

func TestDeterministicAcrossPushes(t *testing.T) {
	p := parts(t)
	a := synthetictest.Start(t, synthetic.Options{Parts: p})
	b := synthetictest.Start(t, synthetic.Options{Parts: p})

	require.Equal(t, a.Manifest.Images(), b.Manifest.Images())

	// and what the registries hold is what the manifests say
	for _, img := range b.Manifest.Images() {
		got, err := crane.Digest(img.Ref(b.Addr))
		require.NoError(t, err)
		require.Equal(t, img.Digest, got, img.Ref(b.Addr))
	}
}

// A registry with BlobDir holds its blobs as files there (not in the heap) and serves the same release, pulled and
// verified whole.
func TestBlobDir(t *testing.T) {
	p := parts(t)
	dir := filepath.Join(t.TempDir(), "blobs")
	mem := synthetictest.Start(t, synthetic.Options{Parts: p})
	disk := synthetictest.Start(t, synthetic.Options{Parts: p, BlobDir: dir})

	require.Equal(t, mem.Manifest.Images(), disk.Manifest.Images())

	vi, ok := disk.Manifest.Version("v1.13.0")
	require.True(t, ok)

	img, err := crane.Pull(vi.Imager.Ref(disk.Addr), crane.WithPlatform(&v1.Platform{OS: "linux", Architecture: "amd64"}))
	require.NoError(t, err)
	require.NoError(t, validate.Image(img), "every blob of the imager image matches its digest")

	layers, err := img.Layers()
	require.NoError(t, err)

	for _, l := range layers {
		d, err := l.Digest()
		require.NoError(t, err)
		require.FileExists(t, filepath.Join(dir, d.Algorithm, d.Hex), "layer %s stored as a file", d)
	}
}

func TestOptions(t *testing.T) {
	p := synthetic.StandInParts()
	require.False(t, p.Real())

	srv := synthetictest.Start(t, synthetic.Options{Parts: p, Namespace: "mirror/talos", Versions: []string{"v1.11.2"}})

	vi, ok := srv.Manifest.Version("v1.11.2")
	require.True(t, ok)
	require.Equal(t, "mirror/talos/imager", vi.Imager.Repository)
	require.Equal(t, "mirror/talos/extensions", vi.ExtensionsCatalog.Repository)

	_, err := crane.Digest(vi.InstallerBase.Ref(srv.Addr))
	require.NoError(t, err)

	files := catalogFiles(t, srv.Addr, vi.ExtensionsCatalog)
	require.Contains(t, string(files["image-digests"].data), "ghcr.io/mirror/talos/hello-world-service:v1.11.2@sha256:")

	// the namespace holds the ghcr.io cluster images (the installer too, before 1.12); the others keep their names
	checkCluster(t, srv.Addr, "mirror/talos", vi)
	require.Equal(t, "mirror/talos/installer", vi.Cluster[8].Image.Repository)
	require.Equal(t, "gcr.io/etcd-development/etcd", vi.Cluster[2].Image.Repository)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	_, err = synthetic.Start(context.Background(), ln, synthetic.Options{Parts: p, Versions: []string{"1.13.0"}})
	require.ErrorContains(t, err, "v-prefixed")
}

func TestServeUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)

	// Serve says when the whole release is pushed: cancelling before would fail the push, as it should.
	var logs syncBuffer

	go func() {
		done <- synthetic.Serve(ctx, ln, synthetic.Options{Parts: synthetic.StandInParts(), Logger: slogTo(&logs)})
	}()

	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "synthetic Talos release served") },
		30*time.Second, 50*time.Millisecond)

	_, err = crane.Digest(addr + "/siderolabs/installer-base:v1.13.0")
	require.NoError(t, err)

	cancel()
	require.NoError(t, <-done)

	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "registry still listening after cancel")
}

func TestLoadPartsMissing(t *testing.T) {
	var logs bytes.Buffer

	p, err := synthetic.LoadParts(t.TempDir(), slogTo(&logs))
	require.NoError(t, err)
	require.False(t, p.Real())
	require.Len(t, p.Missing(), 8)
	require.Contains(t, logs.String(), "make deps")
	require.True(t, bytes.HasPrefix(p.File("arm64", "systemd-stub.efi"), []byte("MZ")))
	require.NotEmpty(t, p.File("amd64", "busybox"))
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// syncBuffer is a bytes.Buffer for one writer and one reader at a time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}
