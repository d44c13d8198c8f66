package inspect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const testOVF = `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:href="disk.vmdk" ovf:id="file1" ovf:size="%d"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="%d" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="talos"><Info>A virtual machine</Info></VirtualSystem>
</Envelope>
`

// ovaFiles converts a raw disk as the imager's vmdk-convert replacement does and writes the OVF and manifest
// beside it; it returns the directory.
func ovaFiles(t *testing.T, capacityMiB int) string {
	t.Helper()

	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	require.NoError(t, os.WriteFile(raw, nil, 0o644))
	require.NoError(t, os.Truncate(raw, 16<<20))
	run(t, dir, nil, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, filepath.Join(dir, "disk.vmdk"))
	require.NoError(t, os.Remove(raw))

	vmdk, err := os.ReadFile(filepath.Join(dir, "disk.vmdk"))
	require.NoError(t, err)

	ovf := fmt.Sprintf(testOVF, len(vmdk), capacityMiB)
	writeFile(t, dir, "disk.ovf", []byte(ovf))

	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	writeFile(t, dir, "disk.mf", []byte(fmt.Sprintf("SHA256(disk.vmdk)= %s\nSHA256(disk.ovf)= %s\n", sum(vmdk), sum([]byte(ovf)))))

	return dir
}

// tarOVA archives the files with the tar tool in the given order, as the imager does.
func tarOVA(t *testing.T, dir string, names ...string) []byte {
	t.Helper()

	return run(t, dir, nil, "tar", append([]string{"-cf", "-"}, names...)...)
}

func TestOVA(t *testing.T) {
	dir := ovaFiles(t, 16)
	data := tarOVA(t, dir, "disk.ovf", "disk.mf", "disk.vmdk")

	rep, err := OVA(bytes.NewReader(data))
	require.NoError(t, err)

	require.Equal(t, "disk.ovf", rep.OVF)
	require.Equal(t, []string{"disk.ovf", "disk.mf", "disk.vmdk"}, []string{rep.Entries[0].Name, rep.Entries[1].Name, rep.Entries[2].Name})
	require.Len(t, rep.Manifest, 2)
	require.True(t, strings.HasPrefix(rep.Manifest["disk.vmdk"], "SHA256:"))

	require.Len(t, rep.Disks, 1)
	require.Equal(t, int64(16<<20), rep.Disks[0].CapacityBytes)
	require.Equal(t, "file1", rep.Disks[0].FileRef)

	require.Len(t, rep.VMDKs, 1)
	v := rep.VMDKs[0]
	require.Equal(t, "disk.vmdk", v.Name)
	require.Equal(t, "streamOptimized", v.CreateType)
	require.True(t, v.Compressed)
	require.Equal(t, int64(16<<20), v.CapacityBytes)
	require.Equal(t, uint64(128), v.GrainSize)
}

func TestOVARejectsCorruption(t *testing.T) {
	dir := ovaFiles(t, 16)
	good := tarOVA(t, dir, "disk.ovf", "disk.mf", "disk.vmdk")

	wrongCapacity := ovaFiles(t, 32)

	badManifest := ovaFiles(t, 16)
	mf, err := os.ReadFile(filepath.Join(badManifest, "disk.mf"))
	require.NoError(t, err)
	writeFile(t, badManifest, "disk.mf", bytes.Replace(mf, []byte("SHA256(disk.vmdk)= "), []byte("SHA256(disk.vmdk)= 00"), 1))

	badVMDK := ovaFiles(t, 16)
	vmdk, err := os.ReadFile(filepath.Join(badVMDK, "disk.vmdk"))
	require.NoError(t, err)
	copy(vmdk, "KDMX")
	writeFile(t, badVMDK, "disk.vmdk", vmdk)

	unlisted := ovaFiles(t, 16)
	writeFile(t, unlisted, "extra.nvram", []byte("x"))

	for _, tc := range []struct {
		name    string
		in      []byte
		is      error
		message string
	}{
		{"ovf not first", tarOVA(t, dir, "disk.mf", "disk.ovf", "disk.vmdk"), ErrMalformed, "must come first"},
		{"missing disk", tarOVA(t, dir, "disk.ovf", "disk.mf"), ErrMalformed, "lacks"},
		{"manifest digest", tarOVA(t, badManifest, "disk.ovf", "disk.mf", "disk.vmdk"), ErrMalformed, "manifest says"},
		{"vmdk magic", tarOVA(t, badVMDK, "disk.ovf", "disk.mf", "disk.vmdk"), ErrMalformed, "KDMV"},
		{"capacity", tarOVA(t, wrongCapacity, "disk.ovf", "disk.mf", "disk.vmdk"), ErrMalformed, "capacity"},
		{"unlisted file", tarOVA(t, unlisted, "disk.ovf", "disk.mf", "disk.vmdk", "extra.nvram"), ErrMalformed, "no digest"},
		{"truncated", good[:len(good)/2], io.ErrUnexpectedEOF, "disk.vmdk"},
		{"not a tar", randomBytes(4096, 11), ErrMalformed, "ova"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OVA(bytes.NewReader(tc.in))
			require.Error(t, err)
			t.Log(err)
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), tc.message)
		})
	}
}
