package bench

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/e2e"
)

// nginx is the baseline: a static file server tuned as a CDN origin would be, serving the same bytes from the
// same file as the factory.
type nginx struct {
	URL  string
	root string
}

// nginxConf is the whole configuration: sendfile, no access log, long keep-alive, one worker per CPU it may use.
// Every path nginx writes to lives in its own directory, so it needs nothing of the host's nginx setup.
const nginxConf = `%s
daemon off;
master_process on;
worker_processes %[4]s;
error_log stderr;
pid %[2]s/nginx.pid;
events { worker_connections 1024; }
http {
	default_type application/octet-stream;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	access_log off;
	client_body_temp_path %[2]s/tmp/body;
	proxy_temp_path %[2]s/tmp/proxy;
	fastcgi_temp_path %[2]s/tmp/fastcgi;
	uwsgi_temp_path %[2]s/tmp/uwsgi;
	scgi_temp_path %[2]s/tmp/scgi;
	server {
		listen %[3]s;
		root %[2]s/root;
		location /pxe/ { default_type "text/plain; charset=utf-8"; }
	}
}
`

// startNginx runs nginx on cpus (nil: every CPU, one worker per CPU) until the benchmark ends. Without an nginx
// binary it returns nil, having said so: the benchmarks then report the factory's numbers alone.
func startNginx(b *testing.B, cpus []int) *nginx {
	b.Helper()

	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx" // not on PATH for most non-root users
		if _, err := os.Stat(bin); err != nil {
			b.Log("nginx not found (Debian package nginx-light): reporting Edge Factory without the nginx baseline")

			return nil
		}
	}

	dir := b.TempDir()
	require.NoError(b, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	require.NoError(b, os.MkdirAll(filepath.Join(dir, "root"), 0o755))

	// Run as root, nginx would hand its workers to "nobody", who cannot enter the benchmark's private temp dir.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}

	// "auto" counts the machine's CPUs, not the ones nginx may run on.
	workers := "auto"
	if cpus != nil {
		workers = strconv.Itoa(len(cpus))
	}

	addr := e2e.FreeAddr(b)
	conf := filepath.Join(dir, "nginx.conf")
	require.NoError(b, os.WriteFile(conf, fmt.Appendf(nil, nginxConf, user, dir, addr, workers), 0o644))

	n := &nginx{URL: "http://" + addr, root: filepath.Join(dir, "root")}
	startServer(b, "nginx", append(launcher(cpus), bin, "-e", "stderr", "-p", dir, "-c", conf), nil, n.URL+"/")

	return n
}

// startServer runs argv (with env added to this process's environment) until the benchmark ends, and returns once
// it answers HTTP at url. It fails the benchmark, with the server's output, when it exits first.
func startServer(b *testing.B, name string, argv, env []string, url string) {
	b.Helper()

	logs := &e2e.SyncBuffer{}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logs
	cmd.Stderr = logs
	require.NoError(b, cmd.Start(), name)

	exited := make(chan struct{})
	go func() {
		cmd.Wait() //nolint:errcheck // an early exit is reported below with the logs
		close(exited)
	}()

	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited already
		<-exited
	})

	require.Eventually(b, func() bool {
		select {
		case <-exited:
			return true
		default:
		}

		resp, err := http.Get(url)
		if err != nil {
			return false
		}

		resp.Body.Close()

		return true
	}, 10*time.Second, 20*time.Millisecond, "%s never answered", name)

	select {
	case <-exited:
		require.FailNow(b, name+" exited", "%s", logs)
	default:
	}
}

// serveFile makes nginx serve file at urlPath and returns its URL. A hard link shares the factory's stored file
// (and its page cache); across file systems a symbolic link does.
func (n *nginx) serveFile(b *testing.B, urlPath, file string) string {
	b.Helper()

	dst := filepath.Join(n.root, filepath.FromSlash(urlPath))
	require.NoError(b, os.MkdirAll(filepath.Dir(dst), 0o755))

	if err := os.Link(file, dst); err != nil {
		require.NoError(b, os.Symlink(file, dst))
	}

	return n.URL + urlPath
}

// serveBytes makes nginx serve data at urlPath and returns its URL.
func (n *nginx) serveBytes(b *testing.B, urlPath string, data []byte) string {
	b.Helper()

	dst := filepath.Join(n.root, filepath.FromSlash(urlPath))
	require.NoError(b, os.MkdirAll(filepath.Dir(dst), 0o755))
	require.NoError(b, os.WriteFile(dst, data, 0o644))

	return n.URL + urlPath
}
