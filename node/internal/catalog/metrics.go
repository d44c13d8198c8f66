package catalog

import "github.com/prometheus/client_golang/prometheus"

// metrics are the catalog sync's counters.
type metrics struct {
	catalogSyncs    *prometheus.CounterVec
	catalogVersions prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		catalogSyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgefactory_catalog_syncs_total",
			Help: "Catalog synchronisations with the upstream registry, by result (ok, partial, failed).",
		}, []string{"result"}),
		catalogVersions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgefactory_catalog_versions",
			Help: "Talos versions in the replicated catalog.",
		}),
	}

	reg.MustRegister(m.catalogSyncs, m.catalogVersions)

	return m
}
