package hosttools

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestXFSArgs(t *testing.T) {
	existing := map[string]bool{"/etc/xfs/present.conf": true}
	exists := func(p string) bool { return existing[p] }

	// What the v1.13 imager passes (pkg/makefs/xfs.go), in its order.
	talos := []string{"-n", "ftype=1", "-c", "options=/usr/share/xfsprogs/mkfs/lts_6.18.conf", "-f", "-L", "EPHEMERAL",
		"-p", "file=/proc/self/fd/7", "-m", "uuid=0d3c7a7e-7c5a-4b7e-8e5b-9f0d8c6a1b2c", "/tmp/disk.raw"}

	tests := []struct {
		name     string
		args     []string
		oldProto bool
		want     []string
		changes  int
	}{
		{
			name:     "talos call on xfsprogs 6.1",
			args:     talos,
			oldProto: true,
			want: []string{"-n", "ftype=1", "-f", "-L", "EPHEMERAL", "-p", "/proc/self/fd/7",
				"-m", "uuid=0d3c7a7e-7c5a-4b7e-8e5b-9f0d8c6a1b2c", "/tmp/disk.raw"},
			changes: 2,
		},
		{
			name: "talos call on xfsprogs 6.5+ keeps -p file=",
			args: talos,
			want: []string{"-n", "ftype=1", "-f", "-L", "EPHEMERAL", "-p", "file=/proc/self/fd/7",
				"-m", "uuid=0d3c7a7e-7c5a-4b7e-8e5b-9f0d8c6a1b2c", "/tmp/disk.raw"},
			changes: 1,
		},
		{
			name:     "existing config file kept",
			args:     []string{"-c", "options=/etc/xfs/present.conf", "img"},
			oldProto: true,
			want:     []string{"-c", "options=/etc/xfs/present.conf", "img"},
		},
		{
			name:     "bare protofile untouched",
			args:     []string{"-p", "/tmp/proto", "img"},
			oldProto: true,
			want:     []string{"-p", "/tmp/proto", "img"},
		},
		{
			name:     "-c without options= untouched",
			args:     []string{"-c", "other=1", "img"},
			oldProto: true,
			want:     []string{"-c", "other=1", "img"},
		},
		{
			name:     "trailing -c is the target, not an option",
			args:     []string{"-f", "-c"},
			oldProto: true,
			want:     []string{"-f", "-c"},
		},
		{
			name:     "no options",
			args:     []string{"img"},
			oldProto: true,
			want:     []string{"img"},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changes := xfsArgs(tt.args, exists, tt.oldProto)
			require.Equal(t, tt.want, got)
			require.Len(t, changes, tt.changes)
		})
	}
}

func TestVFATArgs(t *testing.T) {
	sizes := map[string]int64{
		"/tmp/small.img": 12 << 20,
		"/tmp/edge.img":  64<<20 - 512,
		"/tmp/limit.img": 64 << 20,
		"/tmp/big.img":   1 << 30,
	}
	size := func(p string) (int64, bool) {
		n, ok := sizes[p]

		return n, ok
	}

	tests := []struct {
		name    string
		args    []string
		want    []string
		changed bool
	}{
		{
			name:    "talos efiboot.img under 64 MiB",
			args:    []string{"-F", "32", "-n", "EFI", "--invariant", "/tmp/small.img"},
			want:    []string{"-n", "EFI", "--invariant", "/tmp/small.img"},
			changed: true,
		},
		{
			name:    "just under the limit",
			args:    []string{"-F", "32", "/tmp/edge.img"},
			want:    []string{"/tmp/edge.img"},
			changed: true,
		},
		{
			name: "at the limit stays FAT32",
			args: []string{"-F", "32", "/tmp/limit.img"},
			want: []string{"-F", "32", "/tmp/limit.img"},
		},
		{
			name: "big image stays FAT32",
			args: []string{"-F", "32", "-n", "EFI", "/tmp/big.img"},
			want: []string{"-F", "32", "-n", "EFI", "/tmp/big.img"},
		},
		{
			name:    "joined -F32",
			args:    []string{"-F32", "-n", "EFI", "/tmp/small.img"},
			want:    []string{"-n", "EFI", "/tmp/small.img"},
			changed: true,
		},
		{
			name: "other FAT size untouched",
			args: []string{"-F", "16", "/tmp/small.img"},
			want: []string{"-F", "16", "/tmp/small.img"},
		},
		{
			name: "target not a regular file (block device)",
			args: []string{"-F", "32", "/dev/sda1"},
			want: []string{"-F", "32", "/dev/sda1"},
		},
		{
			name: "no arguments",
			args: []string{},
			want: []string{},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changes := vfatArgs(tt.args, size)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.changed, len(changes) > 0, "changes: %v", changes)
		})
	}
}

func TestVMDKArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    []string
		wantErr bool
	}{
		{
			name: "talos ova call",
			args: []string{"/tmp/x/disk.vmdk.in", "/tmp/x/disk.vmdk"},
			want: []string{"convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
				"/tmp/x/disk.vmdk.in", "/tmp/x/disk.vmdk"},
		},
		{name: "one argument", args: []string{"/tmp/a"}, wantErr: true},
		{name: "open-vmdk option", args: []string{"-i", "/tmp/a"}, wantErr: true},
		{name: "three arguments", args: []string{"a", "b", "c"}, wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vmdkArgs(tt.args)
			if tt.wantErr {
				require.Error(t, err)

				return
			}

			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSquashfs45Args(t *testing.T) {
	base := []string{"/tmp/ext/rootfs", "/tmp/sq/0.sqsh", "-all-root", "-noappend", "-no-progress",
		"-comp", "zstd", "-Xcompression-level", "18"}

	tests := []struct {
		name    string
		args    []string
		want    []string
		changes int
	}{
		{
			name: "no selinux labels: untouched",
			args: base,
			want: base,
		},
		{
			name: "talos selinux pseudo xattrs",
			args: append(append([]string{}, base...), "-xattrs-exclude", ".*",
				"-p", "/ x security.selinux=system_u:object_r:system_t:s0",
				"-p", "usr/lib/modules/a b.ko x security.selinux=system_u:object_r:modules_t:s0"),
			want:    append(append([]string{}, base...), "-no-xattrs"),
			changes: 4,
		},
		{
			name: "other pseudo definitions kept",
			args: append(append([]string{}, base...), "-p", "dev/console c 600 0 0 5 1",
				"-xattrs-exclude", ".*"),
			want:    append(append([]string{}, base...), "-p", "dev/console c 600 0 0 5 1", "-no-xattrs"),
			changes: 2,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changes := squashfs45Args(tt.args)
			require.Equal(t, tt.want, got)
			require.Len(t, changes, tt.changes)

			if tt.changes > 0 {
				require.Contains(t, strings.Join(changes, ";"), "SELinux labels are lost")
			}
		})
	}
}

func TestXorrisofsArgs(t *testing.T) {
	require.Equal(t, []string{"-as", "mkisofs", "-o", "out.iso", "dir"}, xorrisofsArgs([]string{"-o", "out.iso", "dir"}))
}

func TestAtLeast(t *testing.T) {
	tests := []struct {
		v    string
		min  []int
		want bool
	}{
		{"4.5.1", []int{4, 6}, false},
		{"4.6", []int{4, 6}, true},
		{"4.6.1", []int{4, 6}, true},
		{"5.0", []int{4, 6}, true},
		{"6.1.0", []int{6, 5}, false},
		{"6.13.0", []int{6, 5}, true},
		{"257.13-1~deb13u1", []int{257}, true},
		{"252.39-1~deb12u2", []int{257}, false},
		{"", []int{1}, false},
		{"abc", []int{0}, false},
	}

	for _, tt := range tests {
		require.Equal(t, tt.want, atLeast(tt.v, tt.min...), "atLeast(%q, %v)", tt.v, tt.min)
	}
}

func TestExtractVersion(t *testing.T) {
	tests := []struct {
		out  string
		tool string
		want string
	}{
		{"mksquashfs version 4.5.1 (2022/03/17)\ncopyright", "mksquashfs", "4.5.1"},
		{"*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***", "zstd", "1.5.4"},
		{"grub-mkrescue (GRUB) 2.06-13+deb12u2", "grub-mkrescue", "2.06-13+deb12u2"},
		{"qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", "qemu-img", "7.2.22"},
		{"Usage: mkfs.fat [OPTIONS] TARGET [BLOCKS]\nup to BLOCKS 1024 byte blocks\nmkfs.fat 4.2 (2021-01-31)", "mkfs.vfat", "4.2"},
		{"kmod version 30\n+ZSTD +XZ", "depmod", "30"},
		{"mkfs.xfs version 6.1.0", "mkfs.xfs", "6.1.0"},
		{"no digits here", "cpio", ""},
	}

	for _, tt := range tests {
		var tool Tool
		for _, candidate := range Tools {
			if candidate.Name == tt.tool {
				tool = candidate
			}
		}

		require.Equal(t, tt.tool, tool.Name)
		require.Equal(t, tt.want, extractVersion(tt.out, tool.VersionRE), "%s: %q", tt.tool, tt.out)
	}
}

func TestWithAdapterDir(t *testing.T) {
	got := withAdapterDir("/usr/bin:/opt/a:/usr/bin/x:/opt/a:/bin", "/opt/a")
	require.Equal(t, "/opt/a:/usr/bin:/usr/bin/x:/bin:/usr/local/sbin:/usr/sbin:/sbin", got)

	got = withAdapterDir("/usr/sbin:/usr/bin:/sbin:/usr/local/sbin", "/x")
	require.Equal(t, "/x:/usr/sbin:/usr/bin:/sbin:/usr/local/sbin", got)
}
