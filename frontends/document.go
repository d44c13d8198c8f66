package frontends

import (
	"encoding/json"
	"net/http"
	"strings"

	"go.yaml.in/yaml/v4"
)

// WriteDocument answers v as YAML when the client asks for it (Accept or ?format=yaml), else as indented JSON: the
// documents operators read and edit (machine profiles, cluster settings).
func WriteDocument(w http.ResponseWriter, r *http.Request, status int, v any) {
	if r.URL.Query().Get("format") == "yaml" || strings.Contains(r.Header.Get("Accept"), "yaml") {
		out, err := yaml.Marshal(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)

			return
		}

		w.Header().Set("Content-Type", "application/yaml")
		w.WriteHeader(status)
		w.Write(out) //nolint:errcheck // the client hung up, nothing to do

		return
	}

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)

	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck,errchkjson // the client hung up, nothing to do; documents always encode
}
