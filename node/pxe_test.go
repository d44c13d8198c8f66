package node_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPXEScripts(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), realUpstream(t))
	cfg.PXEURL = "http://pxe.site.example:8080/"
	n := startReady(t, cfg)
	id := n.createSchematic(t, kindsSchematic)
	cmdline := metalCmdline113 + " " + metaArg + " edgefactory.test=1"
	image := "http://pxe.site.example:8080/image/" + id + "/v1.13.0/"

	for _, tc := range []struct{ path, want string }{
		{"/pxe/" + id + "/v1.13.0/metal-amd64", "#!ipxe\n\nimgfree\n" +
			"kernel " + image + "kernel-amd64 " + cmdline + "\n" +
			"initrd " + image + "initramfs-amd64.xz\n" +
			"boot\n"},
		// iPXE's ${buildarch} and a version without "v": normalised in the URLs
		{"/pxe/" + id + "/1.13.0/metal-x86_64", "#!ipxe\n\nimgfree\n" +
			"kernel " + image + "kernel-amd64 " + cmdline + "\n" +
			"initrd " + image + "initramfs-amd64.xz\n" +
			"boot\n"},
		{"/pxe/" + id + "/v1.13.0/metal-amd64-secureboot", "#!ipxe\n\nimgfree\n" +
			"kernel " + image + "metal-amd64-secureboot-uki.efi " + metalCmdline113 + " lockdown=confidentiality " +
			metaArg + " edgefactory.test=1\n" +
			"boot\n"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp := n.do(t, "GET", tc.path, "", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
			assert.Equal(t, tc.want, resp.Body)
			assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		})
	}
}

// TestPXEScriptURLsServe follows a script's URLs (on the node's own advertised URL) with a client that refuses
// redirects: the kernel and initramfs come straight from the node.
func TestPXEScriptURLsServe(t *testing.T) {
	n := startReady(t, testConfig(t, t.TempDir(), realUpstream(t)))
	id := n.createSchematic(t, `customization: {}`)

	script := n.do(t, "GET", "/pxe/"+id+"/v1.13.0/metal-amd64", "", nil)
	require.Equal(t, http.StatusOK, script.StatusCode, script.Body)

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	urls := 0

	for _, line := range strings.Split(script.Body, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || (fields[0] != "kernel" && fields[0] != "initrd") {
			continue
		}

		require.True(t, strings.HasPrefix(fields[1], n.URL()+"/image/"), "%s points at this node", fields[1])

		resp, err := client.Head(fields[1])
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, fields[1])

		urls++
	}

	assert.Equal(t, 2, urls)
}
