package ring

import (
	"fmt"
	"testing"
)

func BenchmarkOwner(b *testing.B) {
	ks := keys(1024, 20)
	for _, n := range []int{3, 9, 64} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := newRing(b, Config{}, names(n))
			for i := 0; b.Loop(); i++ {
				r.Owner(ks[i%len(ks)])
			}
		})
	}
}

func BenchmarkHolders(b *testing.B) {
	ks := keys(1024, 21)
	for _, n := range []int{3, 9, 64} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := newRing(b, Config{}, names(n))
			for i := 0; b.Loop(); i++ {
				r.Holders(ks[i%len(ks)], 2)
			}
		})
	}
}

// BenchmarkKeysMovedBySixthNode times one membership change between 5 and 6 members (ns/op) and reports
// the share of 100k keys whose owner the sixth node changes, beside the ideal 1/6.
func BenchmarkKeysMovedBySixthNode(b *testing.B) {
	views := [][]string{names(5), names(6)}
	r := New(Config{})
	for i := 0; b.Loop(); i++ {
		r.Set(views[i%2])
	}

	ks := keys(100000, 22)
	before := owners(b, newRing(b, Config{}, views[0]), ks)
	after := owners(b, newRing(b, Config{}, views[1]), ks)
	b.ReportMetric(movedFraction(before, after), "moved-fraction")
	b.ReportMetric(1.0/6, "target-fraction")
}
