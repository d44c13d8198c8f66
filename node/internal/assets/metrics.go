package assets

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefactory/edgefactory/imager"
)

// metrics are the asset service's counters.
type metrics struct {
	cacheHits          prometheus.Counter
	builds             *prometheus.CounterVec
	buildSeconds       *prometheus.HistogramVec
	buildConflicts     prometheus.Counter
	peerFetches        *prometheus.CounterVec
	peerVerifyFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, builder *imager.Builder) *metrics {
	m := &metrics{
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgefactory_cache_hits_total",
			Help: "Asset requests answered from this node's store without building or fetching.",
		}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgefactory_builds_total",
			Help: "Asset builds run on this node, by output kind and result (ok, failed).",
		}, []string{"kind", "result"}),
		buildSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edgefactory_build_duration_seconds",
			Help:    "Time to build an asset, by output kind.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200},
		}, []string{"kind"}),
		buildConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgefactory_build_conflicts_total",
			Help: "Builds whose bytes lost to a different, earlier recorded build of the same recipe.",
		}),
		peerFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgefactory_peer_fetches_total",
			Help: "Asset copies fetched from other members, by result (ok, error, unreachable).",
		}, []string{"result"}),
		peerVerifyFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgefactory_peer_verify_failures_total",
			Help: "Copies from members whose bytes did not match the asset's digest (dropped, never served whole).",
		}),
	}

	// Counted as a build begins, not when it ends: a duplicate still running, or one whose record never reached
	// Raft, is seen (tests assert exactly one build by it).
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "edgefactory_build_starts_total",
		Help: "Builds begun on this node (the imager started), whatever their outcome.",
	}, func() float64 { return float64(builder.Stats().Started) }))
	reg.MustRegister(m.cacheHits, m.builds, m.buildSeconds, m.buildConflicts, m.peerFetches, m.peerVerifyFailures)

	return m
}
