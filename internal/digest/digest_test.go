package digest

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	good := Of([]byte("hello"))

	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"canonical", good, true},
		{"no prefix", strings.TrimPrefix(good, Prefix), false},
		{"other algorithm", "sha512:" + strings.TrimPrefix(good, Prefix), false},
		{"upper case", Prefix + strings.ToUpper(strings.TrimPrefix(good, Prefix)), false},
		{"short", good[:len(good)-1], false},
		{"long", good + "0", false},
		{"not hex", Prefix + strings.Repeat("g", 64), false},
		{"empty", "", false},
		{"path", Prefix + "../../" + strings.Repeat("a", 58), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.in)
			if (err == nil) != tc.ok || Valid(tc.in) != tc.ok {
				t.Fatalf("Check(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}

			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Check(%q) = %v, not ErrInvalid", tc.in, err)
			}
		})
	}
}

func TestOf(t *testing.T) {
	want := "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	if got := Of([]byte("hello")); got != want {
		t.Fatalf("Of = %s, want %s", got, want)
	}

	h := sha256.New()
	h.Write([]byte("hello"))

	if got := OfHash(h); got != want {
		t.Fatalf("OfHash = %s, want %s", got, want)
	}
}
