package main

import (
	"os"
	"runtime/debug"
)

// servingGCPercent is the garbage collector's target for a node that serves, where GOGC is not set. A node's live
// heap is small (metadata: asset bytes stream from disk, builds run in child processes) while every request
// allocates a few KiB, so at Go's default of 100 a rack asking for PXE scripts starts a collection every few tens
// of milliseconds, and each one delays the requests it overlaps. 400 collects four times less often for a few tens
// of MB more heap (BenchmarkPXEScripts in e2e/bench shows the tail).
const servingGCPercent = 400

// tuneGC applies servingGCPercent unless GOGC is set. serve and dev call it once set up, just before serving: dev
// builds the whole synthetic release in memory first, and that peak is not worth multiplying.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(servingGCPercent)
	}
}
