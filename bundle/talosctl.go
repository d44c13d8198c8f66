package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"

	"github.com/edgefactory/edgefactory/imager/release"
)

// maxTalosctl bounds the talosctl binary extracted (the real ones are about 100 MB).
const maxTalosctl = 1 << 30

// talosctlTimeout bounds one `talosctl images default`.
const talosctlTimeout = 2 * time.Minute

// clusterImages runs the version's own talosctl (the binary for this host, from its talosctl-all image) as
// `talosctl images default` and returns every reference it prints. The talosctl-all blobs read stay in the store
// (they are the bundle's when Options.Talosctl takes the image, and are pruned otherwise).
func (m *mirror) clusterImages(ctx context.Context, version string) ([]origin, error) {
	if !release.ServesTalosctl(version) {
		return nil, fmt.Errorf("no talosctl-all image before Talos 1.11 to list them with")
	}

	file := "talosctl-linux-" + runtime.GOARCH

	bin, err := m.extractTalosctl(ctx, version, file)
	if err != nil {
		return nil, err
	}
	defer os.Remove(bin) // temporary

	ctx, cancel := context.WithTimeout(ctx, talosctlTimeout)
	defer cancel()

	stdout, stderr, err := runExecutable(ctx, bin, "images", "default")
	if err != nil {
		return nil, fmt.Errorf("%s images default: %w: %s", file, err, lastLines(stderr, 5))
	}

	var refs []origin

	for line := range strings.SplitSeq(stdout, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}

		o, err := parseOrigin(line)
		if err != nil {
			return nil, fmt.Errorf("%s images default printed %q: not an image reference", file, line)
		}

		refs = append(refs, o)
	}

	if len(refs) == 0 {
		return nil, fmt.Errorf("%s images default printed no image", file)
	}

	m.log.Info("cluster images", "version", version, "images", len(refs))

	return refs, nil
}

// extractTalosctl writes the file of <ns>/talosctl-all:<version> (its linux/amd64 image: every platform's image
// carries the same files) to a temporary executable.
func (m *mirror) extractTalosctl(ctx context.Context, version, file string) (string, error) {
	repo, err := m.client.repo(m.smap.source(DefaultFrom + "/" + release.TalosctlComponent))
	if err != nil {
		return "", err
	}

	top, raw, err := m.manifest(ctx, repo, repo.Tag(version), nil)
	if err != nil {
		return "", fmt.Errorf("read %s:%s: %w", repo, version, err)
	}

	img, imgRaw := top, raw

	if top.MediaType.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return "", err
		}

		i := slices.IndexFunc(idx.Manifests, func(d v1.Descriptor) bool {
			return d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64"
		})
		if i < 0 {
			return "", fmt.Errorf("%s:%s has no linux/amd64 image", repo, version)
		}

		img = idx.Manifests[i]

		if _, imgRaw, err = m.manifest(ctx, repo, repo.Digest(img.Digest.String()), &img); err != nil {
			return "", err
		}
	}

	mf, err := v1.ParseManifest(bytes.NewReader(imgRaw))
	if err != nil {
		return "", fmt.Errorf("%s@%s: %w", repo, img.Digest, err)
	}

	// Later layers win: look from the last.
	for _, l := range slices.Backward(mf.Layers) {
		d := l.Digest.String()

		if _, err := m.store.ensure(ctx, d, l.Size, m.client.blob(repo, d, l.Size), nil); err != nil {
			return "", fmt.Errorf("%s@%s: %w", repo, d, err)
		}

		bin, err := m.fileFromLayer(d, file)
		if err != nil {
			return "", fmt.Errorf("%s@%s: %w", repo, d, err)
		}

		if bin != "" {
			return bin, nil
		}
	}

	return "", fmt.Errorf("%s:%s has no file %s", repo, version, file)
}

// fileFromLayer copies a root file of a layer (tar, possibly gzip or zstd compressed) to a temporary executable;
// "" when the layer has no such file.
func (m *mirror) fileFromLayer(d, file string) (string, error) {
	rc, _, err := m.store.open(d)
	if err != nil {
		return "", err
	}
	defer rc.Close() // read-only

	r, err := decompressed(bufio.NewReader(rc))
	if err != nil {
		return "", err
	}
	defer r.Close() // read-only

	tr := tar.NewReader(r)

	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", nil
		}

		if err != nil {
			return "", err
		}

		if h.Typeflag != tar.TypeReg || strings.TrimPrefix(path.Clean("/"+h.Name), "/") != file {
			continue
		}

		execMu.Lock()
		defer execMu.Unlock()

		f, err := os.CreateTemp("", "edgefactory-"+file+"-")
		if err != nil {
			return "", err
		}

		_, err = io.Copy(f, io.LimitReader(tr, maxTalosctl))
		if cerr := f.Close(); err == nil {
			err = cerr
		}

		if err == nil {
			err = os.Chmod(f.Name(), 0o700) //nolint:gosec // an executable, for this user alone
		}

		if err != nil {
			os.Remove(f.Name()) // not kept

			return "", err
		}

		return f.Name(), nil
	}
}

// decompressed reads a layer whatever its compression (gzip, zstd, none), told by its first bytes.
func decompressed(r *bufio.Reader) (io.ReadCloser, error) {
	magic, _ := r.Peek(4) // fewer bytes: not compressed

	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(r)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}

		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(r), nil
	}
}

// execMu keeps a fork (exec of one version's talosctl) from happening while another version's talosctl is open
// for writing: the child would inherit the descriptor until it execs, and the other exec fail with "text file busy".
var execMu sync.Mutex

// runExecutable runs a binary just written, retrying the start a few times on "text file busy" (a fork elsewhere in
// the process may still hold it open for a moment).
func runExecutable(ctx context.Context, bin string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer

	for attempt := 0; ; attempt++ {
		stdout.Reset()
		stderr.Reset()

		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Env = append(os.Environ(), "HOME="+os.TempDir())

		execMu.Lock()
		err := cmd.Start()
		execMu.Unlock()

		if errors.Is(err, syscall.ETXTBSY) && attempt < 5 {
			time.Sleep(50 * time.Millisecond)

			continue
		}

		if err == nil {
			err = cmd.Wait()
		}

		return stdout.String(), stderr.String(), err
	}
}

// lastLines is the end of a command's output, for an error message.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}

	return strings.Join(lines, " / ")
}
