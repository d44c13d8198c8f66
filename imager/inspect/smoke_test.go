package inspect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAssetsDir runs the matching checker on every file of $EDGEFACTORY_INSPECT_DIR (real imager outputs kept
// from a build), by file name: *.iso, *.efi, initramfs*.xz, *.raw, *.qcow2, *.vhd, *.ova, installer*.tar.
func TestAssetsDir(t *testing.T) {
	dir := os.Getenv("EDGEFACTORY_INSPECT_DIR")
	if dir == "" {
		t.Skip("EDGEFACTORY_INSPECT_DIR not set")
	}

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)

	for _, e := range entries {
		p := filepath.Join(dir, e.Name())

		t.Run(e.Name(), func(t *testing.T) {
			f, err := os.Open(p)
			require.NoError(t, err)
			t.Cleanup(func() { f.Close() })

			st, err := f.Stat()
			require.NoError(t, err)

			var rep any

			switch name := e.Name(); {
			case strings.HasSuffix(name, ".iso"):
				rep, err = ISO(f, st.Size())
			case strings.HasSuffix(name, ".efi"):
				rep, err = UKI(f)
			case strings.HasPrefix(name, "initramfs") && strings.HasSuffix(name, ".xz"):
				var r InitramfsReport
				r, err = Initramfs(f, "extensions.yaml")
				rep = r.Members
				t.Log(r.Files())
				t.Log(string(r.Contents["extensions.yaml"]))
			case strings.HasSuffix(name, ".raw"):
				rep, err = GPT(f, st.Size())
			case strings.HasSuffix(name, ".qcow2"):
				rep, err = QCOW2(f)
			case strings.HasSuffix(name, ".vhd"):
				rep, err = VHD(f, st.Size())
			case strings.HasSuffix(name, ".ova"):
				rep, err = OVA(f)
			case strings.HasSuffix(name, ".tar"):
				rep, err = InstallerTar(p)
			default:
				t.Skip("no checker for this name")
			}

			require.NoError(t, err)
			t.Logf("%+v", rep)
		})
	}
}
