#!/usr/bin/env bash
# Runs the CPU-bound noisy-neighbour case several times and pools the quiet tenant's
# deliveries over all runs.
#
# One 30 s run rests its p99 on the 58 slowest of about 5,800 quiet deliveries, so a single
# disk stall moves it. Pooling five runs gives 29,000 deliveries per phase. Each run starts its
# own server (`--spawn-server`) on 127.0.0.1 with an empty data directory.
#
# Usage: make bench-noisy, or scripts/bench-noisy.sh [TARGET_DIR] after a release build
# (TARGET_DIR defaults to $CARGO_TARGET_DIR, else ./target). RUNS (default 5) and
# PHASE_SECS (default 30) change the number and length of the runs; KEEP=DIR keeps the raw
# files (one CSV of quiet samples and one JSON report per run) in DIR.
set -euo pipefail

bin="${1:-${CARGO_TARGET_DIR:-target}}/release"
runs="${RUNS:-5}"
phase_secs="${PHASE_SECS:-30}"
work="${KEEP:-$(mktemp -d)}"
mkdir -p "$work"
[ -z "${KEEP:-}" ] && trap 'rm -rf "$work"' EXIT

# The noisy tenant: capped at 0.1 core, bandwidth quotas out of the way, offering far more
# than 0.1 core can sequence.
gib=1073741824
for run in $(seq 1 "$runs"); do
  echo "run $run of $runs ($((2 * phase_secs)) s)" >&2
  "$bin/bulkhead-loadtest" noisy-neighbor --spawn-server "$bin/bulkhead" \
    --duration-secs "$phase_secs" \
    --noisy-quota cpu_millicores=100 --noisy-quota ingress_bytes_per_sec=$gib \
    --noisy-quota egress_bytes_per_sec=$gib --flood-rate 60000 \
    --quiet-samples "$work/run$run.csv" --json "$work/run$run.json" >"$work/run$run.txt" 2>&1 \
    || { echo "run $run failed; its report:" >&2; cat "$work/run$run.txt" >&2; exit 1; }
done

python3 - "$work" "$runs" "$phase_secs" <<'PY'
import json, math, sys

work, runs, phase = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
warm_up = 1.0

def percentile(sorted_values, q):
    # Nearest rank, as hdrhistogram reports it.
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]

def deliveries(run):
    alone, neighbour = [], []
    with open(f"{work}/run{run}.csv") as f:
        next(f)
        for line in f:
            kind, sent, latency = line.strip().split(",")
            if kind != "delivery":
                continue
            sent, latency = float(sent), float(latency)
            if warm_up <= sent < phase:
                alone.append(latency)
            elif phase + warm_up <= sent < 2 * phase:
                neighbour.append(latency)
    return sorted(alone), sorted(neighbour)

print(f"quiet tenant's delivery latency in ms, {runs} run{'s' if runs != 1 else ''} of two "
      f"{phase:.0f} s phases: alone, then next to a neighbour (nbr) flooding at its CPU cap")
print("the first second of each phase is left out; ratio = p99 with the neighbour / p99 alone, "
      "target at most 1.5")
print("a ratio far below 1 means stalls in the phase alone (a slow disk), not better isolation")
print(f"{'run':>6} {'p50 alone':>10} {'p50 nbr':>8} {'p99 alone':>10} {'p99 nbr':>8} "
      f"{'ratio':>6} {'max alone':>10} {'max nbr':>8} {'noisy cpu/quota':>16} {'noisy msg/s':>12}")
pooled_alone, pooled_neighbour = [], []
for run in range(1, runs + 1):
    alone, neighbour = deliveries(run)
    pooled_alone += alone
    pooled_neighbour += neighbour
    report = json.load(open(f"{work}/run{run}.json"))
    cpu_ratio = report["noisy"].get("cpu_ratio")
    print(f"{run:>6} {percentile(alone, 50):>10.2f} {percentile(neighbour, 50):>8.2f} "
          f"{percentile(alone, 99):>10.2f} {percentile(neighbour, 99):>8.2f} "
          f"{percentile(neighbour, 99) / percentile(alone, 99):>6.2f} "
          f"{alone[-1]:>10.1f} {neighbour[-1]:>8.1f} "
          f"{cpu_ratio if cpu_ratio is not None else float('nan'):>16.4f} "
          f"{report['noisy']['acked_messages_per_sec']:>12.0f}")

pooled_alone.sort()
pooled_neighbour.sort()
print(f"{'pooled':>6} {percentile(pooled_alone, 50):>10.2f} {percentile(pooled_neighbour, 50):>8.2f} "
      f"{percentile(pooled_alone, 99):>10.2f} {percentile(pooled_neighbour, 99):>8.2f} "
      f"{percentile(pooled_neighbour, 99) / percentile(pooled_alone, 99):>6.2f} "
      f"{pooled_alone[-1]:>10.1f} {pooled_neighbour[-1]:>8.1f}")
print(f"pooled deliveries: {len(pooled_alone)} alone, {len(pooled_neighbour)} with the neighbour; "
      f"p99.9 {percentile(pooled_alone, 99.9):.2f} ms alone, "
      f"{percentile(pooled_neighbour, 99.9):.2f} ms with the neighbour")
PY
