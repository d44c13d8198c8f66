package digest_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/edgefactory/edgefactory/internal/digest"
)

// canonical is the one spelling of a digest, written independently of Check so the two can disagree.
var canonical = regexp.MustCompile(`\Asha256:[0-9a-f]{64}\z`)

// FuzzCheck holds Check to the canonical spelling: it accepts exactly what the regular expression accepts, its
// refusals all match ErrInvalid, CheckHex agrees with Check on the part after the prefix, and Of always computes a
// digest Check accepts. A digest names a file, a map key and a Raft record, so a second spelling of the same
// content that slipped through would store it twice.
func FuzzCheck(f *testing.F) {
	for _, seed := range []string{
		digest.Of(nil), digest.Of([]byte("a")), "sha256:" + strings.Repeat("A", 64), "sha256:" + strings.Repeat("0", 63),
		"sha256:" + strings.Repeat("0", 65), "sha512:" + strings.Repeat("0", 64), "SHA256:" + strings.Repeat("0", 64),
		"", "sha256:", strings.Repeat("0", 64), "sha256:" + strings.Repeat("g", 64), digest.Of(nil) + "\n",
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, d string) {
		err := digest.Check(d)
		if want := canonical.MatchString(d); want != (err == nil) {
			t.Fatalf("Check(%q) = %v, want accepted=%v", d, err, want)
		}

		if err != nil && !errors.Is(err, digest.ErrInvalid) {
			t.Fatalf("Check(%q) = %v, which does not match ErrInvalid", d, err)
		}

		if hexPart, ok := strings.CutPrefix(d, digest.Prefix); ok && (digest.CheckHex(hexPart) == nil) != (err == nil) {
			t.Fatalf("CheckHex and Check disagree on %q", d)
		}

		if of := digest.Of([]byte(d)); !digest.Valid(of) {
			t.Fatalf("Of(%q) = %q, which Check refuses", d, of)
		}
	})
}
