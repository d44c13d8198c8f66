package netboot

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	// requests is indexed by outcome, resolved once: a booting rack sends thousands a minute.
	requests  [3]prometheus.Counter
	transfers *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgefactory_netboot_dhcp_requests_total",
		Help: "DHCP packets received on netboot interfaces, by result: answered, ignored (not a PXE or HTTP Boot " +
			"request this server answers) or not_responder (another member answers this machine).",
	}, []string{"result"})
	transfers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgefactory_netboot_tftp_transfers_total",
		Help: "TFTP read requests, by file (\"other\" for names not served) and result: sent, refused or failed.",
	}, []string{"file", "result"})

	if reg != nil {
		reg.MustRegister(requests, transfers)
	}

	m := &metrics{transfers: transfers}
	m.requests[ignored] = requests.WithLabelValues("ignored")
	m.requests[notResponder] = requests.WithLabelValues("not_responder")
	m.requests[answered] = requests.WithLabelValues("answered")

	return m
}

func (m *metrics) transfer(file, result string) {
	m.transfers.WithLabelValues(file, result).Inc()
}
