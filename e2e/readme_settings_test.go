package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestReadmeSettings runs the README's cluster-settings example as written: a settings write without the token is
// refused (401), `settings set` with it changes the catalog policy (the broken version leaves the catalog) and the
// cache budget, and `settings get` shows the change and who made it.
func TestReadmeSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two processes of the binary; skipped with -short")
	}

	text := runReadmeSection(t, "### Cluster settings and protected writes", 3*time.Minute)

	assert.Contains(t, text, "401\n", "a settings write without credentials is refused")
	assert.Contains(t, text, "cluster settings changed")
	assert.Contains(t, text, "- v1.12.0", "settings get lists the broken version:\n%s", text)
	assert.Contains(t, text, "cacheBudget: 53687091200")
	assert.Contains(t, text, "changedBy: ops", "the change is recorded with the token's name")
}
