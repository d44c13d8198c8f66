package cas

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

const digestPrefix = "sha256:"

// ErrInvalidDigest is returned for any digest string that is not "sha256:" followed by 64 lowercase hex digits.
var ErrInvalidDigest = errors.New("invalid digest")

// CheckDigest reports whether d is a well-formed digest. Only the canonical spelling is accepted (lowercase hex),
// so a digest maps to exactly one file name and one map key.
func CheckDigest(d string) error {
	hexPart, ok := strings.CutPrefix(d, digestPrefix)
	if !ok {
		return fmt.Errorf("%w %q: want %s<64 lowercase hex>", ErrInvalidDigest, d, digestPrefix)
	}
	if len(hexPart) != 2*sha256.Size {
		return fmt.Errorf("%w %q: want %d hex digits, got %d", ErrInvalidDigest, d, 2*sha256.Size, len(hexPart))
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w %q: character %q is not lowercase hex", ErrInvalidDigest, d, c)
		}
	}
	return nil
}

// digestOf formats a finished hash as a digest string.
func digestOf(h hash.Hash) string {
	return digestPrefix + hex.EncodeToString(h.Sum(nil))
}

// digestFromName turns a blob file name (64 hex) back into a digest, or "" when the name is not one.
func digestFromName(name string) string {
	d := digestPrefix + name
	if CheckDigest(d) != nil {
		return ""
	}
	return d
}
