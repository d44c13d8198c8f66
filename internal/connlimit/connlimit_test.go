package connlimit_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/internal/connlimit"
)

func listen(t *testing.T, opts connlimit.Options) net.Listener {
	t.Helper()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })

	return connlimit.Listen(ln, opts)
}

// Past Max, a connection is accepted only once an open one closes.
func TestMaxConnections(t *testing.T) {
	ln := listen(t, connlimit.Options{Max: 2})

	accepted := make(chan net.Conn, 3)

	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}

			accepted <- c
		}
	}()

	var clients []net.Conn

	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err) // the kernel completes the handshake: the third waits in its backlog
		t.Cleanup(func() { c.Close() })

		clients = append(clients, c)
	}

	first := <-accepted
	<-accepted

	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open (Max 2)")
	case <-time.After(300 * time.Millisecond):
	}

	require.NoError(t, first.Close())

	select {
	case c := <-accepted:
		t.Cleanup(func() { c.Close() })
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not accepted after one of the two closed")
	}

	require.Error(t, first.Close()) // closed twice: it must not free a second slot

	fourth, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { fourth.Close() })

	select {
	case <-accepted:
		t.Fatal("a connection closed twice freed two slots")
	case <-time.After(300 * time.Millisecond):
	}

	assert.Len(t, clients, 3)
}

// A client that reads nothing is cut after Stall, both for plain writes and for a file sent with sendfile; one that
// reads gets every byte.
func TestStall(t *testing.T) {
	const stall = 500 * time.Millisecond

	data := bytes.Repeat([]byte("edge factory "), 4<<20) // 52 MB: far more than the socket buffers hold
	path := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(path, data, 0o600))

	type result struct {
		err  error
		took time.Duration
	}

	ln := listen(t, connlimit.Options{Stall: stall})
	mux := http.NewServeMux()
	done := make(chan result, 1)

	mux.HandleFunc("/write", func(w http.ResponseWriter, _ *http.Request) {
		start := time.Now()
		_, err := io.Copy(w, bytes.NewReader(data)) // a bytes.Reader: plain writes
		done <- result{err, time.Since(start)}
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, _ *http.Request) {
		start := time.Now()

		w.Header().Set("Content-Length", strconv.Itoa(len(data))) // not chunked: the file goes to ReadFrom whole

		f, err := os.Open(path)
		if err == nil {
			_, err = io.Copy(w, f) // the response writer hands the file to the connection's ReadFrom
			f.Close()
		}

		done <- result{err, time.Since(start)}
	})

	server := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go server.Serve(ln) //nolint:errcheck // ends with the test
	t.Cleanup(func() { server.Close() })

	for _, path := range []string{"/write", "/file"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)

		_, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)

		select { // the client never reads
		case r := <-done:
			var ne net.Error
			require.ErrorAs(t, r.err, &ne, "%s: the write to a client that reads nothing must fail", path)
			assert.True(t, ne.Timeout(), "%s: %v", path, r.err)
			assert.Less(t, r.took, 5*time.Second, "%s: cut long after the stall", path)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the server still writes to a client that has read nothing for 10s (stall %v)", path, stall)
		}

		c.Close()
	}

	// A client that reads slowly, but reads, gets the whole file though the download lasts four stalls: each chunk
	// has its own deadline, not the download.
	resp, err := http.Get("http://" + ln.Addr().String() + "/file")
	require.NoError(t, err)

	start := time.Now()
	got := 0
	buf := make([]byte, 1<<20)

	for {
		n, err := io.ReadFull(resp.Body, buf)
		got += n

		if err != nil {
			break
		}

		time.Sleep(40 * time.Millisecond) // 52 reads: about 2 s
	}

	resp.Body.Close()
	assert.Equal(t, len(data), got, "a client that reads slowly gets the whole file")
	assert.Greater(t, time.Since(start), 3*stall, "the slow download was not slow")

	r := <-done
	require.NoError(t, r.err)
}
