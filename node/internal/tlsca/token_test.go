package tlsca_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgefactory/edgefactory/node/internal/tlsca"
)

func TestToken(t *testing.T) {
	fp := tlsca.Fingerprint(newCA(t, "lab").Cert)

	token, err := tlsca.NewToken(fp)
	require.NoError(t, err)
	require.Regexp(t, `^[a-z0-9]{6}$`, token.ID)
	require.Regexp(t, `^[0-9a-f]{32}$`, token.Secret)
	require.Equal(t, fp, token.CAFingerprint)
	require.Equal(t, "efjoin1."+token.ID+"."+token.Secret+"."+strings.TrimPrefix(fp, "sha256:"), token.String())

	parsed, err := tlsca.ParseToken(token.String())
	require.NoError(t, err)
	require.Equal(t, token, parsed)

	parsed, err = tlsca.ParseToken(" " + token.String() + "\n")
	require.NoError(t, err)
	require.Equal(t, token, parsed)

	another, err := tlsca.NewToken(fp)
	require.NoError(t, err)
	require.NotEqual(t, token.Secret, another.Secret)

	_, err = tlsca.NewToken("sha256:abc")
	require.ErrorContains(t, err, "is not sha256:<64 lowercase hex digits>")

	// Logging a token does not log its secret.
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("made", "token", token)
	require.Contains(t, logged.String(), token.ID)
	require.NotContains(t, logged.String(), token.Secret)
}

func TestParseTokenRefuses(t *testing.T) {
	id, secret, ca := "ab12cd", strings.Repeat("0f", 16), strings.Repeat("e1", 32)

	for name, tc := range map[string]struct {
		token string
		want  string
	}{
		"empty":             {"", "1 parts separated by dots instead of 4"},
		"missing part":      {"efjoin1." + id + "." + secret, "3 parts separated by dots instead of 4"},
		"extra part":        {"efjoin1." + id + "." + secret + "." + ca + ".x", "5 parts"},
		"wrong prefix":      {"efjoin2." + id + "." + secret + "." + ca, `does not start with "efjoin1."`},
		"short id":          {"efjoin1.ab12c." + secret + "." + ca, "the id is not 6 lowercase letters or digits"},
		"upper-case id":     {"efjoin1.AB12CD." + secret + "." + ca, "the id is not 6"},
		"id with a dash":    {"efjoin1.ab-2cd." + secret + "." + ca, "the id is not 6"},
		"short secret":      {"efjoin1." + id + "." + secret[1:] + "." + ca, "the secret is not 32 lowercase hex"},
		"upper-case secret": {"efjoin1." + id + "." + strings.ToUpper(secret) + "." + ca, "the secret is not 32"},
		"secret not hex":    {"efjoin1." + id + ".g" + secret[1:] + "." + ca, "the secret is not 32"},
		"long ca":           {"efjoin1." + id + "." + secret + "." + ca + "0", "the CA sha256 is not 64 lowercase hex"},
		"ca with prefix":    {"efjoin1." + id + "." + secret + ".sha256:" + ca, "the CA sha256 is not 64"},
		"upper-case ca":     {"efjoin1." + id + "." + secret + "." + strings.ToUpper(ca), "the CA sha256 is not 64"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tlsca.ParseToken(tc.token)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, "a join token looks like efjoin1.<id>.<secret>.<ca sha256>")
			require.NotContains(t, err.Error(), secret, "an error never quotes the secret")
		})
	}

	token, err := tlsca.ParseToken("efjoin1." + id + "." + secret + "." + ca)
	require.NoError(t, err)
	require.Equal(t, tlsca.Token{ID: id, Secret: secret, CAFingerprint: "sha256:" + ca}, token)
}

func TestCheckSecret(t *testing.T) {
	token, err := tlsca.NewToken(tlsca.Fingerprint(newCA(t, "lab").Cert))
	require.NoError(t, err)

	hash := tlsca.HashSecret(token.Secret)
	require.Regexp(t, `^sha256:[0-9a-f]{64}$`, hash)
	require.NotContains(t, hash, token.Secret)

	require.True(t, tlsca.CheckSecret(hash, token.Secret))
	require.False(t, tlsca.CheckSecret(hash, strings.Repeat("0", 32)))
	require.False(t, tlsca.CheckSecret(hash, ""))
	require.False(t, tlsca.CheckSecret("", token.Secret))
	require.False(t, tlsca.CheckSecret(strings.ToUpper(hash), token.Secret))
}
