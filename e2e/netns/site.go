//go:build netns

package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The site's own servers on the LAN, in the bridge namespace on bridgeIP: dnsmasq as its DHCP server, either plain
// (addresses only, what Edge Factory members sit beside) or doing network boot itself with TFTP and an nginx (the
// baseline the members are measured against).

// siteHTTPPort is the baseline nginx's port on bridgeIP.
const siteHTTPPort = 8081

// SiteHTTP is the baseline nginx's URL on the LAN.
func SiteHTTP() string { return fmt.Sprintf("http://%s:%d", bridgeIP, siteHTTPPort) }

// plainDHCP is the site's ordinary DHCP server: addresses on the bridge, no DNS, no boot options.
func plainDHCP(dir string) []string {
	return []string{
		"--conf-file=/dev/null",     // not the host's /etc/dnsmasq.conf
		"--no-daemon", "--pid-file", // no pid file: the test holds the process
		"--user=root", // reads the test's private temporary directories
		"--port=0",    // no DNS
		"--log-dhcp", "--log-facility=-",
		"--dhcp-leasefile=" + filepath.Join(dir, "leases"),
		"--bind-interfaces", "--interface=" + bridge,
		"--dhcp-range=" + lanRangeStart + "," + lanRangeEnd + ",255.255.255.0,1h",
	}
}

// pxeDHCP is a site doing network boot with dnsmasq alone: the plain server plus TFTP from tftpRoot (the iPXE
// binaries) and a boot file chosen by architecture; iPXE (user class "iPXE") is sent to nginx's boot.ipxe. The tag
// sets exclude each other, so the order of the dhcp-boot lines does not matter.
func pxeDHCP(dir, tftpRoot string) []string {
	return append(plainDHCP(dir),
		"--enable-tftp", "--tftp-root="+tftpRoot,
		"--dhcp-userclass=set:ipxe,iPXE",
		"--dhcp-match=set:bios,option:client-arch,0",
		"--dhcp-match=set:efi64,option:client-arch,7",
		"--dhcp-match=set:efi64,option:client-arch,9",
		"--dhcp-vendorclass=set:httpboot,HTTPClient",
		"--dhcp-boot=tag:ipxe,"+SiteHTTP()+"/boot.ipxe",
		"--dhcp-boot=tag:bios,tag:!ipxe,undionly.kpxe",
		"--dhcp-boot=tag:efi64,tag:!ipxe,ipxe.efi",
		// UEFI HTTP Boot takes an offer only when it says HTTPClient back and names a URL.
		"--dhcp-boot=tag:httpboot,tag:!ipxe,"+SiteHTTP()+"/ipxe.efi",
		"--dhcp-option-force=tag:httpboot,60,HTTPClient",
	)
}

// dhcpServer is a running dnsmasq and its log, each line stamped when it arrived.
type dhcpServer struct {
	log  *stampedLog
	stop func()
}

// startDNSMasq runs dnsmasq with args in the bridge namespace until the test ends or Stop is called, and waits
// until it serves DHCP on the bridge.
func startDNSMasq(t testing.TB, lab *Lab, label string, args []string) *dhcpServer {
	t.Helper()

	log := &stampedLog{}
	stop := startLogged(t, lab, label, log, dnsmasqBinary, args...)

	require.Eventually(t, func() bool { return log.contains("sockets bound exclusively to interface " + bridge) },
		10*time.Second, 50*time.Millisecond, "%s did not start:\n%s", label, log)

	return &dhcpServer{log: log, stop: stop}
}

// Stop ends dnsmasq now (the cleanup then has nothing left to do).
func (d *dhcpServer) Stop() { d.stop() }

// firstDiscover is when dnsmasq logged the first DHCPDISCOVER from mac after since.
func (d *dhcpServer) firstDiscover(mac string, since time.Time) (time.Time, bool) {
	return d.log.first(since, "DHCPDISCOVER("+bridge+") "+dnsmasqMAC(mac))
}

// startNginx serves root on SiteHTTP() from the bridge namespace (own configuration, pid and temporary paths
// under a test directory) until the test ends, and waits until it answers.
func startNginx(t testing.TB, lab *Lab, root string) {
	t.Helper()

	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("netboot baseline skipped: nginx not found: apt-get install nginx-light")
	}

	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, `daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 256; }
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	default_type application/octet-stream;
	sendfile on;
	server {
		listen %[2]d; # every address of the bridge namespace: the LAN's and the test's management link
		root %[3]s;
	}
}
`, dir, siteHTTPPort, root), 0o644))

	logs := &stampedLog{}
	startLogged(t, lab, "nginx", logs, "nginx", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))

	waitOK(t, fmt.Sprintf("http://%s:%d/boot.ipxe", MgmtIP(0), siteHTTPPort), 10*time.Second, "nginx")
}

// startLogged runs name with args in the bridge namespace, its output into out, until the test ends or the
// returned stop is called (SIGTERM, then SIGKILL after 10 s).
func startLogged(t testing.TB, lab *Lab, label string, out *stampedLog, name string, args ...string) (stop func()) {
	t.Helper()

	return runUntilEnd(t, lab.Command(0, name, args...), label, out, 10*time.Second, 60)
}

// stampedLog collects a process's output line by line, each line with the time it arrived: dnsmasq's own time
// stamps have whole seconds only.
type stampedLog struct {
	mu      sync.Mutex
	lines   []stampedLine
	partial []byte
}

type stampedLine struct {
	at   time.Time
	text string
}

func (l *stampedLog) Write(p []byte) (int, error) {
	now := time.Now()

	l.mu.Lock()
	defer l.mu.Unlock()

	l.partial = append(l.partial, p...)

	for {
		i := strings.IndexByte(string(l.partial), '\n')
		if i < 0 {
			break
		}

		l.lines = append(l.lines, stampedLine{at: now, text: string(l.partial[:i])})
		l.partial = l.partial[i+1:]
	}

	return len(p), nil
}

// first is the arrival time of the first line after since that contains substr.
func (l *stampedLog) first(since time.Time, substr string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()

	for _, line := range l.lines {
		if !line.at.Before(since) && strings.Contains(line.text, substr) {
			return line.at, true
		}
	}

	return time.Time{}, false
}

func (l *stampedLog) contains(substr string) bool {
	_, ok := l.first(time.Time{}, substr)

	return ok
}

func (l *stampedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()

	var b strings.Builder

	for _, line := range l.lines {
		b.WriteString(line.text + "\n")
	}

	return b.String() + string(l.partial)
}
