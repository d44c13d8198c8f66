#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME (default 60s) with one fuzzing worker each, two targets at a time: on a 2-core
# machine each target gets a core for its whole minute, and the suite takes half the wall time of running them one
# after another with two workers each. `make test-fuzz` runs it; docs/testing.md lists what each target checks.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
JOBS=${FUZZJOBS:-2}

targets=(
	"FuzzCanonical ./imager/schematic/"
	"FuzzParsePath ./imager/recipe/"
	"FuzzAsset ./imager/inspect/"
	"FuzzCheck ./internal/digest/"
	"FuzzParse ./frontends/oci/"
	"FuzzParseOrigin ./bundle/"
	"FuzzSourceMap ./bundle/"
	"FuzzCommand ./raftstore/"
	"FuzzConfigFile ./cmd/edgefactory/"
	"FuzzReply ./frontends/netboot/"
)

run() {
	local name=$1 pkg=$2 log
	log=$(mktemp)
	if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel 1 "$pkg" >"$log" 2>&1; then
		echo "fuzz: ${name} (${pkg}): ${FUZZTIME}, no failure: $(grep -o 'execs: [0-9]*' "$log" | tail -1)"
		rm -f "$log"
	else
		echo "fuzz: ${name} (${pkg}) FAILED:"
		cat "$log"
		rm -f "$log"
		return 1
	fi
}
export -f run
export GO FUZZTIME

# The summary CI ends with (scripts/testlog) says whether every target passed.
if printf '%s\n' "${targets[@]}" | xargs -P "$JOBS" -L 1 bash -c 'run "$@"' _; then
	"$GO" run ./scripts/testlog mark test-fuzz ran "(${#targets[@]} fuzz targets, ${FUZZTIME} each)"
else
	"$GO" run ./scripts/testlog mark test-fuzz failed "a fuzz target failed: its input is in its package's testdata/fuzz"
	exit 1
fi
