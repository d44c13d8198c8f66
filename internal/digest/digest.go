// Package digest is the one place a content digest is computed and checked. Edge Factory addresses every blob,
// asset and manifest by "sha256:" followed by 64 lowercase hex digits, and only that canonical spelling is
// accepted, so a digest maps to exactly one file name, one map key and one Raft record.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// Prefix starts every digest.
const Prefix = "sha256:"

// ErrInvalid is matched (errors.Is) by every error Check returns.
var ErrInvalid = errors.New("invalid digest")

// Check reports whether d is a canonical digest, saying what is wrong when it is not.
func Check(d string) error {
	hexPart, ok := strings.CutPrefix(d, Prefix)
	if !ok {
		return fmt.Errorf("%w %q: want %s<64 lowercase hex>", ErrInvalid, d, Prefix)
	}

	if err := CheckHex(hexPart); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalid, d, err)
	}

	return nil
}

// Valid reports whether d is a canonical digest.
func Valid(d string) bool { return Check(d) == nil }

// CheckHex reports whether s is 64 lowercase hex digits (a sha256 in hex: schematic IDs and recipe keys too).
func CheckHex(s string) error {
	if len(s) != 2*sha256.Size {
		return fmt.Errorf("want %d lowercase hex digits, got %d characters", 2*sha256.Size, len(s))
	}

	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("character %q is not lowercase hex", c)
		}
	}

	return nil
}

// Of is the digest of b.
func Of(b []byte) string {
	sum := sha256.Sum256(b)

	return Prefix + hex.EncodeToString(sum[:])
}

// OfHash is the digest a finished sha256 hash gives.
func OfHash(h hash.Hash) string { return Prefix + hex.EncodeToString(h.Sum(nil)) }
