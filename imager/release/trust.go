package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgefactory/edgefactory/imager/signing"
)

// Trust is how release inputs read from a registry are checked (docs/architecture.md "Air-gapped sites"): the
// cosign signature (legacy tag scheme, sha256-<hex>.sig next to the image) of every image must verify with one of
// Keys, unless Off. Nothing is asked of a transparency log, Fulcio or a TUF repository.
type Trust struct {
	Keys []signing.PublicKey
	Off  bool // --input-verify=off: labs only
}

// ErrUnsigned marks an image refused because no trusted signature of it was found.
var ErrUnsigned = errors.New("refused: no cosign signature by a trusted key")

// Verify checks the cosign signature of repoPath@digest in the source registry against s.Trust. A Source without
// Trust checks nothing (its caller checks signatures itself, as a mirror does).
func (s Source) Verify(ctx context.Context, repoPath, digest string) error {
	if s.Trust == nil || s.Trust.Off {
		return nil
	}

	what := repoPath + "@" + digest

	if len(s.Trust.Keys) == 0 {
		return fmt.Errorf("%s: %w: no public key is trusted (--input-public-key)", what, ErrUnsigned)
	}

	tag, err := signing.CosignTag(digest)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}

	ref, err := s.ref(repoPath, tag)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}

	desc, err := remote.Get(ref, s.remote(ctx)...)
	if notFound(err) {
		return fmt.Errorf("%s: %w: the registry has no signature %s", what, ErrUnsigned, ref)
	}

	if err != nil {
		return fmt.Errorf("%s: read its signature: %w", what, err)
	}

	read := func(d string, size int64) ([]byte, error) {
		layer, err := remote.Layer(ref.Context().Digest(d), s.remote(ctx)...)
		if err != nil {
			return nil, err
		}

		rc, err := layer.Compressed() // checked against d as it is read to the end
		if err != nil {
			return nil, err
		}
		defer rc.Close()

		data, err := io.ReadAll(io.LimitReader(rc, size+1))
		if err == nil && int64(len(data)) != size {
			err = fmt.Errorf("%d bytes, the signature manifest says %d", len(data), size)
		}

		return data, err
	}

	if _, err := signing.VerifyCosignManifest(desc.Manifest, read, s.Trust.Keys, digest); err != nil {
		if errors.Is(err, signing.ErrCosignVerify) {
			return fmt.Errorf("%s: %w (%s)", what, ErrUnsigned,
				strings.TrimPrefix(err.Error(), signing.ErrCosignVerify.Error()+": "))
		}

		return fmt.Errorf("%s: check its signature: %w", what, err)
	}

	return nil
}
