package inputs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

func TestFetchAllKinds(t *testing.T) {
	reg := startRegistry(t)
	p := realParts(t)
	s := openStore(t, t.TempDir(), reg.source())
	in := reg.inputs(t)
	ctx := context.Background()

	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			in.OverlayInstaller = &recipe.Image{Repository: in.Overlay.Image.Repository, Digest: in.Overlay.Image.Digest,
				Platform: "linux/" + arch}

			paths, err := s.Fetch(ctx, in, arch)
			require.NoError(t, err)

			// Boot files: exactly the parts the release was made of.
			requireSameFile(t, p.File(arch, "vmlinuz"), paths.Kernel)
			requireSameFile(t, p.File(arch, "systemd-stub.efi"), paths.SDStub)
			requireSameFile(t, p.File(arch, "systemd-boot.efi"), paths.SDBoot)

			initramfs, err := synthetic.Initramfs(p.File(arch, "busybox"), testVersion)
			require.NoError(t, err)
			requireSameFile(t, initramfs, paths.Initramfs)

			vi, _ := reg.manifest.Version(testVersion)

			// Installer base: the imager's own OCI reader finds the target's image in it.
			base := profile.ContainerAsset{OCIPath: paths.BaseInstaller, ImageRef: "ghcr.io/siderolabs/installer-base:" + testVersion}
			img, err := base.Pull(ctx, arch, t.Logf)
			require.NoError(t, err)

			d, err := img.Digest()
			require.NoError(t, err)
			require.Equal(t, vi.InstallerBase.Platforms[arch], d.String())

			idx := readIndex(t, paths.BaseInstaller)
			require.Len(t, idx.Manifests, 1)
			require.Equal(t, arch, idx.Manifests[0].Platform.Architecture)
			require.Equal(t, reg.addr+"/"+vi.InstallerBase.Repository+"@"+vi.InstallerBase.Digest,
				idx.Manifests[0].Annotations[AnnotationRefName])

			// Extensions: the imager extracts each to manifest.yaml + rootfs/.
			require.Len(t, paths.Extensions, len(in.Extensions))

			for i, ext := range paths.Extensions {
				out := t.TempDir()
				require.NoError(t, ext.Extract(ctx, out, arch, t.Logf, map[string]string{}))
				require.FileExists(t, filepath.Join(out, "manifest.yaml"), "extension %d", i)
				require.DirExists(t, filepath.Join(out, "rootfs"))
			}

			// Overlay: the host's image (the imager runs its installer here); overlay installer: the target's.
			require.Equal(t, []string{runtime.GOARCH}, layoutArchs(t, paths.Overlay))
			require.Equal(t, []string{arch}, layoutArchs(t, paths.OverlayInstaller))

			overlay := profile.ContainerAsset{OCIPath: paths.Overlay}
			out := t.TempDir()
			require.NoError(t, overlay.Extract(ctx, out, runtime.GOARCH, t.Logf, nil))
			require.FileExists(t, filepath.Join(out, "installers", synthetic.OverlayName))

			require.Empty(t, paths.SchematicExtension)
			require.Nil(t, paths.SecureBoot)
			requireNoTemp(t, s)

			for _, path := range []string{paths.Kernel, paths.BaseInstaller, paths.Overlay} {
				require.True(t, strings.HasPrefix(path, filepath.Join(s.Dir(), "sha256")+"/"), path)
			}
		})
	}
}

// TestFetchManifestDigests: inputs pinned by the digest of one platform's manifest (as recipe.Plan pins the
// installer base and imager) are stored with that platform recorded, so the imager finds them.
func TestFetchManifestDigests(t *testing.T) {
	reg := startRegistry(t)
	vi, _ := reg.manifest.Version(testVersion)
	ctx := context.Background()
	s := openStore(t, t.TempDir(), reg.source())

	pin := func(p synthetic.Pushed, arch string) recipe.Image {
		return recipe.Image{Repository: p.Repository, Digest: p.Platforms[arch], Platform: "linux/" + arch}
	}

	in := recipe.Inputs{
		Imager:        recipe.Image{Repository: vi.Imager.Repository, Digest: vi.Imager.Platforms["arm64"]},
		InstallerBase: new(pin(vi.InstallerBase, "amd64")),
		Extensions:    []recipe.Image{pin(vi.Extensions[2], "amd64")},
	}

	paths, err := s.Fetch(ctx, in, "amd64")
	require.NoError(t, err)

	// Any platform's imager image holds the boot files of every architecture.
	requireSameFile(t, realParts(t).File("amd64", "vmlinuz"), paths.Kernel)

	for _, dir := range []string{paths.BaseInstaller, paths.Extensions[0].OCIPath} {
		require.Equal(t, []string{"amd64"}, layoutArchs(t, dir))

		img, err := (&profile.ContainerAsset{OCIPath: dir}).Pull(ctx, "amd64", t.Logf)
		require.NoError(t, err)

		d, err := img.Digest()
		require.NoError(t, err)
		require.Contains(t, []string{in.InstallerBase.Digest, in.Extensions[0].Digest}, d.String())
	}
}

func layoutArchs(t *testing.T, dir string) []string {
	t.Helper()

	var archs []string
	for _, m := range readIndex(t, dir).Manifests {
		archs = append(archs, m.Platform.Architecture)
	}

	return archs
}

func readIndex(t *testing.T, dir string) v1.IndexManifest {
	t.Helper()

	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)

	var idx v1.IndexManifest
	require.NoError(t, json.Unmarshal(data, &idx))

	return idx
}

// TestFetchOffline: once on disk, inputs are served with the registry gone.
func TestFetchOffline(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	in := reg.inputs(t)
	ctx := context.Background()

	first, err := openStore(t, dir, reg.source()).Fetch(ctx, in, "amd64")
	require.NoError(t, err)
	require.Positive(t, reg.requests.Load())

	reg.srv.Close()

	before := reg.requests.Load()

	// A new Store on the same directory (a restarted node) finds everything.
	again, err := openStore(t, dir, reg.source()).Fetch(ctx, in, "amd64")
	require.NoError(t, err)
	require.Equal(t, first, again)
	require.Equal(t, before, reg.requests.Load())

	// Something not on disk needs the registry, which is gone.
	in.Extensions = in.Extensions[:1]
	_, err = openStore(t, dir, reg.source()).Fetch(ctx, in, "arm64")
	require.Error(t, err)
}

// TestFetchSharesPulls: concurrent Fetches of the same inputs make the registry traffic of one Fetch.
func TestFetchSharesPulls(t *testing.T) {
	reg := startRegistry(t)
	in := reg.inputs(t)
	ctx := context.Background()

	_, err := openStore(t, t.TempDir(), reg.source()).Fetch(ctx, in, "amd64")
	require.NoError(t, err)

	one := reg.requests.Swap(0)
	require.Positive(t, one)

	s := openStore(t, t.TempDir(), reg.source())

	const n = 6

	results := make([]recipe.Paths, n)
	errs := make([]error, n)

	var wg sync.WaitGroup

	for i := range n {
		wg.Go(func() { results[i], errs[i] = s.Fetch(ctx, in, "amd64") })
	}

	wg.Wait()

	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, results[0], results[i])
	}

	require.Equal(t, one, reg.requests.Load(), "%d concurrent Fetches must pull once", n)
	requireNoTemp(t, s)
}

// TestFetchCallerGivesUp: a Fetch whose context ends returns at once, and the shared pull still completes.
func TestFetchCallerGivesUp(t *testing.T) {
	reg := startRegistry(t)
	in := reg.inputs(t)
	s := openStore(t, t.TempDir(), reg.source())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := s.Fetch(ctx, in, "amd64")
	require.ErrorIs(t, err, context.Canceled)

	// The same store still completes the inputs for the next caller.
	_, err = s.Fetch(context.Background(), in, "amd64")
	require.NoError(t, err)
}

func TestFetchErrors(t *testing.T) {
	reg := startRegistry(t)
	ctx := context.Background()
	missing := "sha256:" + strings.Repeat("ab", 32)

	tests := []struct {
		name   string
		mutate func(in *recipe.Inputs)
		arch   string
		errHas []string
	}{
		{name: "extension digest not in the registry", mutate: func(in *recipe.Inputs) {
			in.Extensions[1].Digest = missing
		}, errHas: []string{"extension siderolabs/hello-world-service", missing}},
		{name: "imager digest not in the registry", mutate: func(in *recipe.Inputs) {
			in.Imager.Digest = missing
		}, errHas: []string{"imager", missing}},
		{name: "digest not sha256 hex", mutate: func(in *recipe.Inputs) {
			in.Extensions[0].Digest = "sha256:../../etc"
		}, errHas: []string{"digest \"sha256:../../etc\""}},
		{name: "tag instead of digest", mutate: func(in *recipe.Inputs) {
			in.Imager.Digest = "v1.13.0"
		}, errHas: []string{"imager", "want sha256"}},
		{name: "extension pinned for another architecture", mutate: func(in *recipe.Inputs) {
			in.Extensions[0].Platform = "linux/arm64"
		}, errHas: []string{"extension siderolabs/amd-ucode: pinned for linux/arm64, but the build targets linux/amd64"}},
		{name: "overlay pinned for another architecture than the host", mutate: func(in *recipe.Inputs) {
			in.Overlay.Image.Platform = "linux/s390x"
		}, errHas: []string{"pinned for linux/s390x, but the build host is linux/" + runtime.GOARCH}},
		{name: "target architecture not in the installer base", arch: "riscv64", mutate: func(*recipe.Inputs) {},
			errHas: []string{"no linux/riscv64 image"}},
		{name: "bad architecture", arch: "../x", mutate: func(*recipe.Inputs) {}, errHas: []string{"architecture"}},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), reg.source())
			in := reg.inputs(t)
			tc.mutate(&in)

			arch := tc.arch
			if arch == "" {
				arch = "amd64"
			}

			_, err := s.Fetch(ctx, in, arch)
			require.Error(t, err)

			for _, want := range tc.errHas {
				require.ErrorContains(t, err, want)
			}

			require.NoDirExists(t, filepath.Join(s.Dir(), "sha256", strings.TrimPrefix(missing, "sha256:")))
			requireNoTemp(t, s)
		})
	}
}

func TestOpenRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, release.Source{})

	junk := filepath.Join(s.tmpDir(), "pull-123", "oci@linux-amd64")
	require.NoError(t, os.MkdirAll(junk, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(junk, "index.json"), []byte("{"), 0o644))

	s = openStore(t, dir, release.Source{})
	requireNoTemp(t, s)
}

// TestFetchVerifies: with a Trust, an extension or overlay image is stored only once its signature verifies with a
// trusted key; one without a good signature is refused, named, and nothing of it is kept.
func TestFetchVerifies(t *testing.T) {
	reg := startRegistry(t)
	vi, _ := reg.manifest.Version(testVersion)

	lab, err := signing.ParsePublicKeys(synthetic.PublicKeyPEM())
	require.NoError(t, err)

	src := reg.source()
	src.Trust = &release.Trust{Keys: lab}

	_, err = openStore(t, t.TempDir(), src).Fetch(t.Context(), reg.inputs(t), "amd64")
	require.NoError(t, err, "every input of the synthetic release is signed with the lab key")

	other, err := signing.GenerateECDSA()
	require.NoError(t, err)

	otherKeys, err := signing.ParsePublicKeys(other.PublicPEM)
	require.NoError(t, err)

	unsigned := vi.Extensions[1]
	require.NoError(t, crane.Delete(unsigned.SignatureRef(reg.addr)))

	for name, trust := range map[string]*release.Trust{
		"signature gone": {Keys: lab},
		"another key":    {Keys: otherKeys},
	} {
		t.Run(name, func(t *testing.T) {
			src := reg.source()
			src.Trust = trust
			s := openStore(t, t.TempDir(), src)

			_, err := s.Fetch(t.Context(), reg.inputs(t), "amd64")
			require.ErrorIs(t, err, release.ErrUnsigned)
			require.ErrorContains(t, err, "extension "+unsigned.Repository)
			require.NoDirExists(t, filepath.Join(s.Dir(), "sha256", strings.TrimPrefix(unsigned.Digest, "sha256:")))
			requireNoTemp(t, s)
		})
	}

	src.Trust = &release.Trust{Off: true}
	_, err = openStore(t, t.TempDir(), src).Fetch(t.Context(), reg.inputs(t), "amd64")
	require.NoError(t, err, "verification off: unsigned inputs are used")
}
