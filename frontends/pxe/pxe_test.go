package pxe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends"
)

func TestScriptBytes(t *testing.T) {
	const id = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

	cmdline := "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 " +
		"nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1"

	for _, tc := range []struct {
		name string
		base string
		boot frontends.PXEBoot
		want string
	}{
		{
			name: "standard",
			base: "http://localhost:8080",
			boot: frontends.PXEBoot{Version: "v1.11.0", Platform: "metal", Arch: "amd64", Cmdline: cmdline},
			want: "#!ipxe\n\nimgfree\n" +
				"kernel http://localhost:8080/image/" + id + "/v1.11.0/kernel-amd64 " + cmdline + "\n" +
				"initrd http://localhost:8080/image/" + id + "/v1.11.0/initramfs-amd64.xz\n" +
				"boot\n",
		},
		{
			name: "secure boot uses the UKI and still appends the command line",
			base: "http://10.0.0.5:8080/factory/",
			boot: frontends.PXEBoot{Version: "v1.13.0", Platform: "metal", Arch: "amd64", SecureBoot: true,
				Cmdline: cmdline + " lockdown=confidentiality"},
			want: "#!ipxe\n\nimgfree\n" +
				"kernel http://10.0.0.5:8080/factory/image/" + id + "/v1.13.0/metal-amd64-secureboot-uki.efi " +
				cmdline + " lockdown=confidentiality\n" +
				"boot\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := url.Parse(tc.base)
			assert.NoError(t, err)
			assert.Equal(t, tc.want, string(Script(base, id, tc.boot)))
		})
	}
}

// bootAssets answers every PXE request with boot; the test changes it between requests.
type bootAssets struct {
	frontends.Assets // only PXE is called

	boot frontends.PXEBoot
}

func (a *bootAssets) PXE(context.Context, string, string, string) (frontends.PXEBoot, error) {
	return a.boot, nil
}

// TestServedScriptFollowsItsInputs: rendered scripts are remembered, but a changed answer (a new catalog changes
// the command line) is never served from the old rendering.
func TestServedScriptFollowsItsInputs(t *testing.T) {
	const id = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

	base, err := url.Parse("http://192.0.2.1:8080")
	require.NoError(t, err)

	assets := &bootAssets{boot: frontends.PXEBoot{Version: "v1.13.0", Platform: "metal", Arch: "amd64",
		Cmdline: "console=ttyS0"}}
	p := &PXE{Assets: assets, BaseURL: base}
	r := chi.NewRouter()
	p.Mount(r)

	get := func() string {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/pxe/"+id+"/v1.13.0/metal-amd64", nil))
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "text/plain; charset=utf-8", w.Header().Get("Content-Type"))

		return w.Body.String()
	}

	first := get()
	assert.Equal(t, string(Script(base, id, assets.boot)), first)
	assert.Equal(t, first, get())

	assets.boot.Cmdline = "console=ttyS0 talos.dashboard.disabled=1"
	assert.Equal(t, string(Script(base, id, assets.boot)), get())
	assert.NotEqual(t, first, get())
}
