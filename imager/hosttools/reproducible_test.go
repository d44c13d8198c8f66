package hosttools

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseCpioArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want cpioCreate
	}{
		{
			name: "talos initramfs call (pkg/imager/extensions/rebuild.go)",
			args: []string{"-H", "newc", "--create", "--reproducible", "--quiet", "-R", "+0:+0"},
			want: cpioCreate{create: true},
		},
		{name: "short -o", args: []string{"-o", "-H", "newc"}, want: cpioCreate{create: true}},
		{name: "clustered -ov0", args: []string{"-ov0"}, want: cpioCreate{create: true, null: true}},
		{name: "--null", args: []string{"--create", "--null"}, want: cpioCreate{create: true, null: true}},
		{name: "o inside a -H value is not -o", args: []string{"-Hodc"}, want: cpioCreate{}},
		{name: "o as the value of -H", args: []string{"-H", "odc", "-i"}, want: cpioCreate{}},
		{name: "o as the value of --format", args: []string{"--format", "odc", "--extract"}, want: cpioCreate{}},
		{name: "--format=odc", args: []string{"--format=odc", "-o"}, want: cpioCreate{create: true}},
		{name: "extract", args: []string{"-idm"}, want: cpioCreate{}},
		{name: "pass-through", args: []string{"-pdm", "/dst"}, want: cpioCreate{}},
		{name: "-D joined", args: []string{"-oD/src"}, want: cpioCreate{create: true, dir: "/src"}},
		{name: "-D separate", args: []string{"-o", "-D", "rel"}, want: cpioCreate{create: true, dir: "rel"}},
		{name: "--directory=", args: []string{"--directory=/x", "-o"}, want: cpioCreate{create: true, dir: "/x"}},
		{name: "--directory separate", args: []string{"--directory", "/y", "-o"}, want: cpioCreate{create: true, dir: "/y"}},
		{name: "-O file named o", args: []string{"-i", "-O", "-o"}, want: cpioCreate{}},
		{name: "after --", args: []string{"-i", "--", "-o"}, want: cpioCreate{}},
		{name: "version", args: []string{"--version"}, want: cpioCreate{}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, parseCpioArgs(tt.args))
		})
	}
}

func TestCpioListPaths(t *testing.T) {
	tests := []struct {
		name string
		list string
		null bool
		want []string
	}{
		{name: "talos listing", list: "0.sqsh\nextensions.yaml\nkernel\nkernel/x.bin\n", want: []string{"0.sqsh", "extensions.yaml", "kernel", "kernel/x.bin"}},
		{name: "no final newline", list: "a\nb", want: []string{"a", "b"}},
		{name: "empty lines skipped", list: "\na\n\n", want: []string{"a"}},
		{name: "spaces kept", list: " a b \n", want: []string{" a b "}},
		{name: "NUL-separated with newlines in names", list: "a\nb\x00c\x00", null: true, want: []string{"a\nb", "c"}},
		{name: "empty", list: "", want: nil},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, cpioListPaths([]byte(tt.list), tt.null))
		})
	}
}

func TestSourceDateEpoch(t *testing.T) {
	tests := []struct {
		value   string
		want    time.Time
		ok      bool
		wantErr bool
	}{
		{value: "1559424892", want: time.Date(2019, 6, 1, 21, 34, 52, 0, time.UTC), ok: true},
		{value: "0", want: time.Unix(0, 0).UTC(), ok: true},
		{value: ""},
		{value: "2019-06-01", wantErr: true},
		{value: "-5", wantErr: true},
		{value: "1559424892 ", wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tt.value)

			got, ok, err := sourceDateEpoch()
			if tt.wantErr {
				require.Error(t, err)

				return
			}

			require.NoError(t, err)
			require.Equal(t, tt.ok, ok)
			require.True(t, tt.want.Equal(got), "got %s", got)
		})
	}
}

func TestFaketimeEnv(t *testing.T) {
	at := time.Unix(1559424892, 0)

	require.Equal(t, []string{
		"LD_PRELOAD=/lib/ft.so",
		"FAKETIME=2019-06-01 21:34:52",
		"TZ=UTC",
		"DONT_FAKE_MONOTONIC=1",
	}, faketimeEnv("/lib/ft.so", at, ""))

	// Whatever the caller preloads stays preloaded, after libfaketime; the local zone never shifts the time.
	got := faketimeEnv("/lib/ft.so", at.In(time.FixedZone("X", 5*3600)), " /lib/other.so ")
	require.Equal(t, "LD_PRELOAD=/lib/ft.so:/lib/other.so", got[0])
	require.Equal(t, "FAKETIME=2019-06-01 21:34:52", got[1])
}

func TestExecEnv(t *testing.T) {
	environ := []string{"PATH=/bin", "TZ=Europe/Paris", loopGuardEnv + "=other", "LD_PRELOAD=/x.so", "HOME=/root"}

	got := execEnv(environ, "mkfs.xfs", []string{"TZ=UTC", "LD_PRELOAD=/ft.so:/x.so"})
	require.Equal(t, []string{loopGuardEnv + "=mkfs.xfs", "TZ=UTC", "LD_PRELOAD=/ft.so:/x.so", "PATH=/bin",
		"HOME=/root"}, got)

	got = execEnv(environ, "cpio", nil)
	require.Equal(t, []string{loopGuardEnv + "=cpio", "PATH=/bin", "TZ=Europe/Paris", "LD_PRELOAD=/x.so",
		"HOME=/root"}, got)
}

func TestParseQemuConvert(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want qemuConvert
		ok   bool
	}{
		{
			name: "talos call (pkg/imager/qemuimg)",
			args: []string{"convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", "/o/disk.vhd.in", "/o/disk.vhd"},
			want: qemuConvert{format: "vpc", dest: "/o/disk.vhd"},
			ok:   true,
		},
		{
			name: "vmdk-convert fallback",
			args: []string{"convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", "a", "b"},
			want: qemuConvert{format: "vmdk", dest: "b"},
			ok:   true,
		},
		{name: "joined -Ovpc and flags", args: []string{"convert", "-pq", "-Ovpc", "a", "b"}, want: qemuConvert{format: "vpc", dest: "b"}, ok: true},
		{name: "cluster ending in O", args: []string{"convert", "-pO", "vpc", "a", "b"}, want: qemuConvert{format: "vpc", dest: "b"}, ok: true},
		{name: "--object value skipped", args: []string{"convert", "--object", "secret,id=s", "-O", "qcow2", "a", "b"}, want: qemuConvert{format: "qcow2", dest: "b"}, ok: true},
		{name: "several sources", args: []string{"convert", "-O", "vpc", "a", "b", "c"}, want: qemuConvert{format: "vpc", dest: "c"}, ok: true},
		{name: "no -O", args: []string{"convert", "a", "b"}, want: qemuConvert{dest: "b"}, ok: true},
		{name: "target image opts", args: []string{"convert", "--target-image-opts", "-O", "vpc", "a", "driver=vpc,file.filename=b"}},
		{name: "one file", args: []string{"convert", "-O", "vpc", "a"}},
		{name: "resize", args: []string{"resize", "disk.raw", "10G"}},
		{name: "nothing", args: nil},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseQemuConvert(tt.args)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestTarCreates(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{args: []string{"-cvf", "out.ova", "-C", "/s", "disk.ovf", "disk.mf", "disk.vmdk"}, want: true}, // talos ova
		{args: []string{"-cvf", "-", "-C", "/d", "--sparse", "--sort=name", "disk.raw"}, want: true},    // talos .tar.gz
		{args: []string{"cvf", "out.tar", "a"}, want: true},
		{args: []string{"--create", "-f", "x"}, want: true},
		{args: []string{"-v", "-c", "a"}, want: true},
		{args: []string{"-xvf", "in.tar"}, want: false},
		{args: []string{"xf", "c.tar"}, want: false},
		{args: []string{"-fc", "-x"}, want: false},      // the archive is named "c"
		{args: []string{"-f", "-c", "-x"}, want: false}, // the archive is named "-c"
		{args: []string{"-Cc", "-x"}, want: false},      // directory "c"
		{args: []string{"-t", "--", "-c"}, want: false},
		{args: []string{"--list", "-f", "a.tar"}, want: false},
	}

	for _, tt := range tests {
		require.Equal(t, tt.want, tarCreates(tt.args), "%q", tt.args)
	}
}

func TestTarOptions(t *testing.T) {
	require.Equal(t, "--mtime=@1559424892 --owner=0 --group=0 --numeric-owner --sort=name", tarOptions(testEpoch, ""))
	require.Equal(t, "--mtime=@1559424892 --owner=0 --group=0 --numeric-owner --sort=name --owner=1",
		tarOptions(testEpoch, " --owner=1 "), "the caller's TAR_OPTIONS come last and win")
}
