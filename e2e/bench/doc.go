// Package bench measures how `edgefactory dev` serves boot assets, each number side by side with a baseline taken in
// the same run: nginx serving the same bytes from the same file (download throughput, iPXE scripts), or the server's
// own resident memory before the load (parallel downloads). The benchmarks run the real binary as a separate process
// on the synthetic Talos release and report their results with b.ReportMetric; they never pass or fail on speed.
// They skip under -short and when the synthetic release is made of stand-ins (run `make deps` first).
//
// Run them with `make bench-serving`. EDGEFACTORY_BENCH_DEV_ARGS adds flags to the server's command line (e.g.
// "--log-level=warn" to measure without the access log).
package bench
