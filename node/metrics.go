package node

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's own counters; each capability registers its own (assets, peer, catalog), and the router
// the HTTP ones.
type metrics struct {
	schematicsCreated   prometheus.Counter
	schematicsDuplicate prometheus.Counter
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
	}

	reg.MustRegister(m.schematicsCreated, m.schematicsDuplicate)

	return m
}
