package cas

import (
	"hash"

	"github.com/edgefactory/edgefactory/internal/digest"
)

const digestPrefix = digest.Prefix

// ErrInvalidDigest is returned for any digest string that is not canonical ("sha256:" and 64 lowercase hex digits,
// digest.Check): a digest maps to exactly one file name.
var ErrInvalidDigest = digest.ErrInvalid

// digestOf formats a finished hash as a digest string.
func digestOf(h hash.Hash) string { return digest.OfHash(h) }

// digestFromName turns a blob file name (64 hex) back into a digest, or "" when the name is not one.
func digestFromName(name string) string {
	d := digestPrefix + name
	if digest.Check(d) != nil {
		return ""
	}
	return d
}
