package settings_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/settings"
)

func change(t *testing.T, doc string) map[string]json.RawMessage {
	t.Helper()

	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(doc), &m))

	return m
}

// TestParseNormalises: values in their JSON types or as the strings the command line sends come out in one
// spelling: versions in full, broken versions sorted without repeats, sizes in bytes, durations as Go prints them.
func TestParseNormalises(t *testing.T) {
	for doc, want := range map[string]map[string]any{
		`{"minVersion":"v1.10"}`:                          {"minVersion": "1.10.0"},
		`{"brokenVersions":["1.13.0","v1.12.1","v1.13"]}`: {"brokenVersions": []string{"v1.12.1", "v1.13.0"}},
		`{"brokenVersions":"v1.12.1, v1.9.0"}`:            {"brokenVersions": []string{"v1.9.0", "v1.12.1"}},
		`{"brokenVersions":null}`:                         {"brokenVersions": []string{}},
		`{"replicas":3,"catalogInterval":"90m"}`:          {"replicas": 3, "catalogInterval": "1h30m0s"},
		`{"replicas":"5"}`:                                {"replicas": 5},
		`{"cacheBudget":"2GiB","lowSpaceWatermark":1000}`: {"cacheBudget": int64(2 << 30), "lowSpaceWatermark": int64(1000)},
		`{"cacheBudget":0}`:                               {"cacheBudget": int64(0)},
		`{"buildProfile":"0123456789ABCDEF"}`:             {"buildProfile": "0123456789abcdef"},
		`{"buildProfile":""}`:                             {"buildProfile": ""},
	} {
		got, err := settings.Parse(change(t, doc))
		require.NoError(t, err, doc)
		assert.Equal(t, want, got, doc)
	}
}

// TestParseRefuses: every mistake is a 400 naming the setting, all of them at once; nothing is half taken.
func TestParseRefuses(t *testing.T) {
	for doc, want := range map[string][]string{
		`{}`:                                         {"no setting to change"},
		`{"replicas":65}`:                            {"replicas: 65 is out of range 1..64"},
		`{"replicas":1.5}`:                           {"replicas: want a whole number"},
		`{"replicas":"three"}`:                       {`replicas: "three" is not a whole number`},
		`{"catalogInterval":"8d"}`:                   {`catalogInterval: "8d" is not a duration`},
		`{"catalogInterval":"200h"}`:                 {"catalogInterval: 200h0m0s is out of range 10s..168h0m0s"},
		`{"cacheBudget":-1}`:                         {"cacheBudget: -1 is negative"},
		`{"lowSpaceWatermark":"-5GiB"}`:              {`lowSpaceWatermark: "-5GiB" is negative`},
		`{"brokenVersions":{"a":1}}`:                 {"brokenVersions: want a list of versions"},
		`{"minVersion":3}`:                           {"minVersion: want a string"},
		`{"buildProfile":"amd64"}`:                   {`buildProfile: "amd64" is not a build profile ID`},
		`{"changedAt":"2026-01-01T00:00:00Z"}`:       {"changedAt: is recorded by the cluster"},
		`{"replicas":0,"nope":true,"minVersion":""}`: {"replicas: 0 is out of range", "nope: unknown setting", `minVersion: "" is not a version`},
	} {
		got, err := settings.Parse(change(t, doc))
		require.Error(t, err, doc)
		assert.Nil(t, got)
		assert.Equal(t, frontends.ClassInvalid, frontends.Classify(err), doc)

		for _, w := range want {
			assert.Contains(t, err.Error(), w, doc)
		}
	}
}
