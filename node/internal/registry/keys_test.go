package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/imager/recipe"
)

// TestObjectKeys: the keys of installer images, signatures and source blobs are the sha256 of the bytes each kind
// has always hashed. They name records in Raft: any other byte would make every recorded object unknown.
func TestObjectKeys(t *testing.T) {
	sum := func(s string) string {
		h := sha256.Sum256([]byte(s))

		return hex.EncodeToString(h[:])
	}

	arches := []recipe.Recipe{{Key: "k1", Asset: recipe.Asset{Arch: "amd64"}}, {Key: "k2", Asset: recipe.Asset{Arch: "arm64"}}}
	require.Equal(t, sum("edgefactory installer image v1\nmetal-installer\namd64 k1\narm64 k2\n"),
		installerKey("metal-installer", arches))

	pem := []byte("-----BEGIN PUBLIC KEY-----\nxyz\n-----END PUBLIC KEY-----\n")
	require.Equal(t, sum("edgefactory cosign signature v1\nsha256:ab\n"+string(pem)), signatureKey("sha256:ab", pem, 0))
	require.Equal(t, sum("edgefactory cosign signature v1\nsha256:ab\n"+string(pem)+"\ngeneration 3\n"),
		signatureKey("sha256:ab", pem, 3))

	require.Equal(t, sum("edgefactory source blob v1\nsha256:cd"), sourceBlobKey("sha256:cd"))
}
