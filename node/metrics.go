package node

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's own counters (HTTP metrics live with the router).
type metrics struct {
	schematicsCreated   prometheus.Counter
	schematicsDuplicate prometheus.Counter
	catalogSyncs        *prometheus.CounterVec
	catalogVersions     prometheus.Gauge
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
	}

	reg.MustRegister(m.schematicsCreated, m.schematicsDuplicate, m.catalogSyncs, m.catalogVersions)

	return m
}
