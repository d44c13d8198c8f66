// Package settings serves the cluster settings (GET and PUT /cluster/settings, docs/api.md §12): the configuration
// every member shares, kept in Raft and changed in one place, never taken from whichever member leads. It owns the
// settings document and its validation; the member that keeps them in Raft and applies them is
// node/internal/settings.
package settings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/blang/semver/v4"
	"github.com/dustin/go-humanize"
	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
)

// Settings is the cluster-wide configuration. Flags and config keys of the same meaning give the values a new
// cluster starts with; from then on only a change through the API (or `edgefactory settings set`) moves them.
type Settings struct {
	// MinVersion hides and refuses Talos versions older than it ("1.2.0", as the official service).
	MinVersion string `json:"minVersion" yaml:"minVersion"`
	// BrokenVersions are hidden and refused although the upstream registry lists them ("v1.12.1").
	BrokenVersions []string `json:"brokenVersions" yaml:"brokenVersions"`
	// Replicas is how many members hold each asset.
	Replicas int `json:"replicas" yaml:"replicas"`
	// CatalogInterval is how often the leader lists the upstream registry's versions (a Go duration, "15m0s").
	CatalogInterval string `json:"catalogInterval" yaml:"catalogInterval"`
	// CacheBudget bounds the bytes of assets each member keeps (least recently used go first); 0 is 80 % of the data disk (cas.DiskShare).
	CacheBudget int64 `json:"cacheBudget" yaml:"cacheBudget"`
	// LowSpaceWatermark is the free disk space each member keeps on its data disk: below it, cached assets are
	// evicted (least recently used first) whatever the budget says. 0 turns it off.
	LowSpaceWatermark int64 `json:"lowSpaceWatermark" yaml:"lowSpaceWatermark"`
	// BuildProfile is the ID of the build profile the cluster builds with (docs/architecture.md §16); "" is the
	// profile most live members share. Set it explicitly during upgrades.
	BuildProfile string `json:"buildProfile" yaml:"buildProfile"`

	// ChangedBy and ChangedAt say who made the last change and when (empty: the cluster's initial values).
	ChangedBy string     `json:"changedBy,omitempty" yaml:"changedBy,omitempty"`
	ChangedAt *time.Time `json:"changedAt,omitempty" yaml:"changedAt,omitempty"`
}

// Interval is CatalogInterval as a duration (0 if it does not parse, which Parse never lets in).
func (s Settings) Interval() time.Duration {
	d, _ := time.ParseDuration(s.CatalogInterval)

	return d
}

// Bounds of the values Parse accepts.
const (
	MaxReplicas        = 64
	MinCatalogInterval = 10 * time.Second
	MaxCatalogInterval = 7 * 24 * time.Hour
)

// Names lists the settings a change may name, in the order the document shows them.
var Names = []string{"minVersion", "brokenVersions", "replicas", "catalogInterval", "cacheBudget", "lowSpaceWatermark",
	"buildProfile"}

// Parse checks a change (setting name → JSON value) and returns it normalised, ready to merge into the stored
// document: versions spelt in full, broken versions sorted without repeats, sizes in bytes. Each value may also be
// given as a string ("3", "200GiB", "v1.12.1,v1.12.2"), as the command line sends them. Every mistake is named.
func Parse(change map[string]json.RawMessage) (map[string]any, error) {
	if len(change) == 0 {
		return nil, invalid(fmt.Sprintf("no setting to change: name one or more of %s", strings.Join(Names, ", ")))
	}

	out := map[string]any{}

	var errs []error

	for _, name := range slices.Sorted(maps.Keys(change)) {
		v, err := parseOne(name, change[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))

			continue
		}

		out[name] = v
	}

	if len(errs) > 0 {
		return nil, invalid(errors.Join(errs...).Error())
	}

	return out, nil
}

func parseOne(name string, raw json.RawMessage) (any, error) {
	switch name {
	case "minVersion":
		s, err := str(raw)
		if err != nil {
			return nil, err
		}

		v, err := semver.ParseTolerant(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a version like 1.2.0", s)
		}

		return v.String(), nil
	case "brokenVersions":
		return parseVersions(raw)
	case "replicas":
		n, err := integer(raw)
		if err != nil {
			return nil, err
		}

		if n < 1 || n > MaxReplicas {
			return nil, fmt.Errorf("%d is out of range 1..%d", n, MaxReplicas)
		}

		return n, nil
	case "catalogInterval":
		s, err := str(raw)
		if err != nil {
			return nil, err
		}

		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration like 15m", s)
		}

		if d < MinCatalogInterval || d > MaxCatalogInterval {
			return nil, fmt.Errorf("%s is out of range %s..%s", d, MinCatalogInterval, MaxCatalogInterval)
		}

		return d.String(), nil
	case "cacheBudget", "lowSpaceWatermark":
		return size(raw)
	case "buildProfile":
		return profileID(raw)
	case "changedBy", "changedAt":
		return nil, errors.New("is recorded by the cluster, not set")
	default:
		return nil, fmt.Errorf("unknown setting (known: %s)", strings.Join(Names, ", "))
	}
}

// parseVersions reads a list of versions (a JSON array, or one string of comma-separated versions; null or "" is
// none) and spells each "v1.2.3", sorted, without repeats.
func parseVersions(raw json.RawMessage) ([]string, error) {
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		s, serr := str(raw)
		if serr != nil {
			return nil, errors.New("want a list of versions, or one string of comma-separated versions")
		}

		list = strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
	}

	out := []string{}

	for _, s := range list {
		v, err := semver.ParseTolerant(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a version like v1.12.1", s)
		}

		out = append(out, "v"+v.String())
	}

	slices.SortFunc(out, func(a, b string) int { return semver.MustParse(a[1:]).Compare(semver.MustParse(b[1:])) })

	return slices.Compact(out), nil
}

// profileID reads a build profile ID (16 lowercase hex digits, as /cluster shows them), or "" for the profile most
// live members share.
func profileID(raw json.RawMessage) (string, error) {
	s, err := str(raw)
	if err != nil {
		return "", err
	}

	s = strings.ToLower(s)
	if s == "" {
		return "", nil
	}

	if len(s) != 16 || strings.Trim(s, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is not a build profile ID (16 hex digits, as GET /cluster shows them; \"\" for "+
			"the profile most live members share)", s)
	}

	return s, nil
}

// str reads a JSON string (or null, as "").
func str(raw json.RawMessage) (string, error) {
	if string(raw) == "null" {
		return "", nil
	}

	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("want a string, got %s", raw)
	}

	return strings.TrimSpace(s), nil
}

// integer reads a whole number, or a string holding one.
func integer(raw json.RawMessage) (int, error) {
	var n int
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, nil
	}

	s, err := str(raw)
	if err != nil {
		return 0, fmt.Errorf("want a whole number, got %s", raw)
	}

	n, err = strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}

	return n, nil
}

// size reads bytes: a whole number, or a string with a unit ("200GiB", "500 MB"); never negative.
func size(raw json.RawMessage) (int64, error) {
	var n int64
	if err := json.Unmarshal(raw, &n); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%d is negative", n)
		}

		return n, nil
	}

	s, err := str(raw)
	if err != nil {
		return 0, fmt.Errorf("want bytes (a number, or a size like 200GiB), got %s", raw)
	}

	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%q is negative", s)
	}

	b, err := humanize.ParseBytes(s)
	if err != nil || b > 1<<62 {
		return 0, fmt.Errorf("%q is not a size like 200GiB", s)
	}

	return int64(b), nil
}

func invalid(msg string) error { return frontends.NewError(frontends.ClassInvalid, msg, nil) }

// Store reads and changes the cluster settings.
type Store interface {
	// Read returns the cluster's settings, including every change acknowledged before the call through any
	// member (a linearizable read); it fails when no Raft leader can confirm them.
	Read(ctx context.Context) (Settings, error)
	// Change applies a change checked by Parse on behalf of who, and returns the settings after it.
	Change(ctx context.Context, change map[string]any, who string) (Settings, error)
}

// maxChangeBytes bounds a change document: a handful of fields.
const maxChangeBytes = 64 << 10

// API serves /cluster/settings.
type API struct {
	Store Store
	// Who names the client making a request (the user or token that authenticated it, else its address).
	Who    func(r *http.Request) string
	Logger *slog.Logger
}

// Mount registers the routes.
func (a *API) Mount(r chi.Router) {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}

	r.Get("/cluster/settings", a.get)
	r.Put("/cluster/settings", a.put)
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	s, err := a.Store.Read(r.Context())
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	frontends.WriteDocument(w, r, http.StatusOK, s)
}

// put changes the settings the body names, as a JSON object of setting → value; the others keep their values.
func (a *API) put(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxChangeBytes))
	if err != nil {
		frontends.WriteError(w, r, a.Logger, frontends.NewError(frontends.ClassTooLarge,
			fmt.Sprintf("settings change larger than %d bytes", maxChangeBytes), err))

		return
	}

	var change map[string]json.RawMessage
	if err := json.Unmarshal(raw, &change); err != nil {
		frontends.WriteError(w, r, a.Logger, invalid(fmt.Sprintf("want a JSON object of setting names and "+
			"values, e.g. {\"replicas\": 3}: %v", err)))

		return
	}

	parsed, err := Parse(change)
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	who := r.RemoteAddr
	if a.Who != nil {
		who = a.Who(r)
	}

	after, err := a.Store.Change(r.Context(), parsed, who)
	if err != nil {
		frontends.WriteError(w, r, a.Logger, err)

		return
	}

	a.Logger.Info("cluster settings changed", "by", who, "change", parsed,
		"request_id", frontends.RequestID(r.Context()))
	frontends.WriteDocument(w, r, http.StatusOK, after)
}
