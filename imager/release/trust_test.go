package release_test

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/release"
	"github.com/edgefactory/edgefactory/imager/signing"
	"github.com/edgefactory/edgefactory/imager/synthetic"
)

// labKeys are the keys the synthetic release is signed with.
func labKeys(t *testing.T) []signing.PublicKey {
	t.Helper()

	keys, err := signing.ParsePublicKeys(synthetic.PublicKeyPEM())
	require.NoError(t, err)

	return keys
}

// TestReadVersionVerifies: with a Trust, every image a catalog read uses (imager, installer base, the extensions and
// overlays catalogs, talosctl-all) must carry a signature by a trusted key, or the read fails naming the image.
func TestReadVersionVerifies(t *testing.T) {
	srv := startRelease(t)
	vi, ok := srv.Manifest.Version("v1.13.0")
	require.True(t, ok)

	other, err := signing.GenerateECDSA()
	require.NoError(t, err)

	otherKeys, err := signing.ParsePublicKeys(other.PublicPEM)
	require.NoError(t, err)

	src := func(tr *release.Trust) release.Source { return release.Source{Registry: srv.Addr, Trust: tr} }

	t.Run("signed", func(t *testing.T) {
		s := src(&release.Trust{Keys: append(otherKeys, labKeys(t)...)})

		v, err := s.ReadVersion(t.Context(), "v1.13.0")
		require.NoError(t, err)
		assert.Equal(t, vi.Imager.Digest, v.Imager.Index)

		tc, err := s.ReadTalosctl(t.Context(), "v1.13.0", nil)
		require.NoError(t, err)
		assert.NotEmpty(t, tc.Files)
	})

	t.Run("off", func(t *testing.T) {
		_, err := src(&release.Trust{Off: true}).ReadVersion(t.Context(), "v1.13.0")
		require.NoError(t, err)
	})

	t.Run("another key", func(t *testing.T) {
		_, err := src(&release.Trust{Keys: otherKeys}).ReadVersion(t.Context(), "v1.13.0")
		require.ErrorIs(t, err, release.ErrUnsigned)
		assert.ErrorContains(t, err, "siderolabs/imager@"+vi.Imager.Digest)

		_, err = src(&release.Trust{Keys: otherKeys}).ReadTalosctl(t.Context(), "v1.13.0", nil)
		require.ErrorIs(t, err, release.ErrUnsigned)
		assert.ErrorContains(t, err, "siderolabs/talosctl-all")
	})

	t.Run("no key", func(t *testing.T) {
		_, err := src(&release.Trust{}).ReadVersion(t.Context(), "v1.13.0")
		require.ErrorIs(t, err, release.ErrUnsigned)
		assert.ErrorContains(t, err, "--input-public-key")
	})

	t.Run("signature gone", func(t *testing.T) {
		require.NoError(t, crane.Delete(vi.OverlaysCatalog.SignatureRef(srv.Addr)))

		_, err := src(&release.Trust{Keys: labKeys(t)}).ReadVersion(t.Context(), "v1.13.0")
		require.ErrorIs(t, err, release.ErrUnsigned)
		assert.ErrorContains(t, err, "siderolabs/overlays@"+vi.OverlaysCatalog.Digest)
		assert.ErrorContains(t, err, "has no signature")

		_, err = src(nil).ReadVersion(t.Context(), "v1.13.0")
		require.NoError(t, err, "a Source without Trust checks nothing")
	})
}
