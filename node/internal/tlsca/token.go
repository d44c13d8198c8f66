package tlsca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
)

const (
	// tokenPrefix starts every join token and names its format version.
	tokenPrefix = "efjoin1"

	// tokenIDLength and tokenIDAlphabet make a token's public ID.
	tokenIDLength   = 6
	tokenIDAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

	// tokenSecretBytes is the size of a token's secret: 128 bits, 32 hex digits.
	tokenSecretBytes = 16

	// fingerprintPrefix starts a Fingerprint; 64 hex digits follow.
	fingerprintPrefix = "sha256:"
	fingerprintHexLen = 2 * sha256.Size
)

// tokenFormat is how a join token looks, for error messages.
const tokenFormat = "a join token looks like " + tokenPrefix + ".<id>.<secret>.<ca sha256>"

// Token lets a new member join: it names the cluster CA the seed must present (by fingerprint) and a secret the seed
// checks (against HashSecret, which is all the cluster stores). Its String form holds the secret: give it to the
// operator, never to a log (a Token logs through slog without it).
type Token struct {
	ID            string // 6 lowercase [a-z0-9] chars, public: names the token in lists and revocation
	Secret        string // 32 lowercase hex chars (128 bits)
	CAFingerprint string // "sha256:<64 hex>"
}

// NewToken makes a token with a random ID and secret for the CA with the given Fingerprint.
func NewToken(caFingerprint string) (Token, error) {
	if !validFingerprint(caFingerprint) {
		return Token{}, fmt.Errorf("join token: the CA fingerprint %q is not sha256:<64 lowercase hex digits>",
			caFingerprint)
	}

	id := make([]byte, tokenIDLength)
	alphabet := big.NewInt(int64(len(tokenIDAlphabet)))

	for i := range id {
		n, err := rand.Int(rand.Reader, alphabet)
		if err != nil {
			return Token{}, fmt.Errorf("join token ID: %w", err)
		}

		id[i] = tokenIDAlphabet[n.Int64()]
	}

	secret := make([]byte, tokenSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return Token{}, fmt.Errorf("join token secret: %w", err)
	}

	return Token{ID: string(id), Secret: hex.EncodeToString(secret), CAFingerprint: caFingerprint}, nil
}

// String is the token as an operator passes it to a joining member: efjoin1.<id>.<secret>.<64 hex digits of the CA
// fingerprint>. It holds the secret.
func (t Token) String() string {
	return tokenPrefix + "." + t.ID + "." + t.Secret + "." + strings.TrimPrefix(t.CAFingerprint, fingerprintPrefix)
}

// LogValue is the token without its secret, so logging a Token does not leak it.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", t.ID), slog.String("ca", t.CAFingerprint))
}

// ParseToken reads a token written by String. Surrounding white space is ignored (a token pasted from a file); anything
// else out of form is refused, with an error naming what is wrong but never quoting the secret.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")

	switch {
	case len(parts) != 4:
		return Token{}, fmt.Errorf("join token: %d parts separated by dots instead of 4; %s", len(parts), tokenFormat)
	case parts[0] != tokenPrefix:
		return Token{}, fmt.Errorf("join token: it does not start with %q; %s", tokenPrefix+".", tokenFormat)
	case !validTokenID(parts[1]):
		return Token{}, fmt.Errorf("join token: the id is not %d lowercase letters or digits; %s", tokenIDLength,
			tokenFormat)
	case !lowerHex(parts[2], 2*tokenSecretBytes):
		return Token{}, fmt.Errorf("join token: the secret is not %d lowercase hex digits; %s", 2*tokenSecretBytes,
			tokenFormat)
	case !lowerHex(parts[3], fingerprintHexLen):
		return Token{}, fmt.Errorf("join token: the CA sha256 is not %d lowercase hex digits; %s", fingerprintHexLen,
			tokenFormat)
	}

	return Token{ID: parts[1], Secret: parts[2], CAFingerprint: fingerprintPrefix + parts[3]}, nil
}

// HashSecret is what the cluster stores of a token's secret: "sha256:" and the hex SHA-256 of the secret. The secret
// is 128 random bits, so a plain hash is enough: there is nothing to guess.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))

	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

// CheckSecret reports whether secret is the one hash was made from, in constant time.
func CheckSecret(hash, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(hash)) == 1
}

// validFingerprint reports whether s is the form Fingerprint gives.
func validFingerprint(s string) bool {
	hexPart, ok := strings.CutPrefix(s, fingerprintPrefix)

	return ok && lowerHex(hexPart, fingerprintHexLen)
}

// validTokenID reports whether s is a token ID: tokenIDLength characters of tokenIDAlphabet.
func validTokenID(s string) bool {
	if len(s) != tokenIDLength {
		return false
	}

	for _, c := range s {
		if !strings.ContainsRune(tokenIDAlphabet, c) {
			return false
		}
	}

	return true
}

// lowerHex reports whether s is n lowercase hex digits.
func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}

	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}

	return true
}
