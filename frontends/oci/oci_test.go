package oci

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

// schematicsFailing answers every lookup with err (a node that cannot confirm a schematic with its Raft leader).
type schematicsFailing struct{ err error }

func (s schematicsFailing) CreateSchematic(context.Context, *schematic.Schematic) (string, []byte, error) {
	return "", nil, s.err
}

func (s schematicsFailing) Schematic(context.Context, string) ([]byte, error) { return nil, s.err }

// registryUnused fails the test if the frontend asks the node for anything: every case here is answered before.
type registryUnused struct {
	Registry

	t *testing.T
}

func (r registryUnused) InstallerManifest(context.Context, string, string, string) (Manifest, error) {
	r.t.Error("InstallerManifest called")

	return Manifest{}, nil
}

func (r registryUnused) Blob(context.Context, string) (frontends.Asset, error) {
	r.t.Error("Blob called")

	return nil, context.Canceled
}

func (r registryUnused) Referrers(context.Context, string, string, string) ([]Descriptor, error) {
	r.t.Error("Referrers called")

	return nil, nil
}

// TestSchematicLookupErrors: the schematic lookup's failure classes map to their registry errors, in the JSON
// envelope: not found is NAME_UNKNOWN (404); a node that cannot reach its Raft leader to confirm the schematic is
// UNAVAILABLE (503, retryable), not a 500.
func TestSchematicLookupErrors(t *testing.T) {
	const id = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

	digest := "sha256:" + strings.Repeat("ab", 32)

	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"not found", frontends.NewError(frontends.ClassNotFound, `schematic ID "x" not found`, nil), 404,
			CodeNameUnknown},
		{"no leader", frontends.NewError(frontends.ClassUnavailable,
			"cannot confirm with the Raft leader: node node1 knows no leader", nil), 503, CodeUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := chi.NewRouter()
			r.Use(middleware.GetHead) // as the frontends router does
			(&OCI{Registry: registryUnused{t: t}, Schematics: schematicsFailing{tc.err}}).Mount(r)

			for _, p := range []string{"/manifests/v1.13.0", "/blobs/" + digest, "/referrers/" + digest} {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					rec := httptest.NewRecorder()
					r.ServeHTTP(rec, httptest.NewRequest(method, "/v2/installer/"+id+p, nil))

					require.Equal(t, tc.status, rec.Code, "%s %s: %s", method, p, rec.Body)
					assert.Equal(t, "application/json", rec.Header().Get("Content-Type"), "%s %s", method, p)

					if method == http.MethodHead {
						assert.Empty(t, rec.Body.String())

						continue
					}

					var env struct {
						Errors []struct{ Code, Message string }
					}

					require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &env), rec.Body.String())
					require.Len(t, env.Errors, 1)
					assert.Equal(t, tc.code, env.Errors[0].Code, p)
					assert.Equal(t, tc.err.Error(), env.Errors[0].Message, "the message names the problem")
				}
			}
		})
	}
}
