package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestReadmeSecure runs the README's secure cluster as written: init, three members over mutual TLS formed with a
// join token, a new token, the certificates, a gossip-key rotation, and no peer API on the public port.
func TestReadmeSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four processes of the binary; skipped with -short")
	}

	text := runReadmeSection(t, "### Securing a cluster", 3*time.Minute)

	assert.Contains(t, text, "join token (expires", "init prints the first token")
	assert.Regexp(t, `join token [a-z0-9]{6} \(expires`, text, "token create prints a token")

	for _, m := range []string{"m1", "m2", "m3"} {
		assert.Regexp(t, `(?m)^`+m+`\s+[0-9a-f]+\s`, text, "certificates list shows %s's", m)
	}

	assert.Contains(t, text, "gossip-key rotated")
	assert.Contains(t, text, "\n404\n", "no peer API on the public port")
}
