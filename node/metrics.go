package node

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's own counters (HTTP metrics live with the router).
type metrics struct {
	schematicsCreated   prometheus.Counter
	schematicsDuplicate prometheus.Counter
	catalogSyncs        *prometheus.CounterVec
	catalogVersions     prometheus.Gauge
	cacheHits           prometheus.Counter
	builds              *prometheus.CounterVec
	buildSeconds        *prometheus.HistogramVec
	buildConflicts      prometheus.Counter
	peerFetches         *prometheus.CounterVec
	peerVerifyFailures  prometheus.Counter
	peerAuthFailures    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		schematicsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgefactory_schematics_created_total",
			Help: "Schematics created (new IDs) through this node.",
		}),
		schematicsDuplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgefactory_schematics_duplicate_total",
			Help: "Schematic creations of an ID that already existed.",
		}),
		catalogSyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgefactory_catalog_syncs_total",
			Help: "Catalog synchronisations with the upstream registry, by result (ok, partial, failed).",
		}, []string{"result"}),
		catalogVersions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgefactory_catalog_versions",
			Help: "Talos versions in the replicated catalog.",
		}),
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
		peerAuthFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgefactory_peer_auth_failures_total",
			Help: "Peer API requests refused for a missing or wrong cluster secret.",
		}),
	}

	reg.MustRegister(m.peerFetches, m.peerVerifyFailures, m.peerAuthFailures)
	reg.MustRegister(m.schematicsCreated, m.schematicsDuplicate, m.catalogSyncs, m.catalogVersions, m.cacheHits,
		m.builds, m.buildSeconds, m.buildConflicts)

	return m
}
