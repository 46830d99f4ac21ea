#!/usr/bin/env bash
# Runs the peer comparison of bulkhead with NATS on this machine and prints the report.
#
# It installs Debian's nats-server when missing, starts it on 127.0.0.1 with JetStream and a
# temporary store directory, and runs `bulkhead-loadtest compare`. That starts bulkhead on
# 127.0.0.1 (fsync durability, temporary data directory) and the two reference ceilings
# (ceiling-ws, ceiling-rocksdb), measures every phase, and stops its servers. When this
# nats-server accepts `sync_interval: always`, a second nats-server with that setting is
# started too, so JetStream is also measured with a sync on every write.
#
# NATS_SERVER names another nats-server binary to use in place of Debian's, such as a newer
# release that accepts `sync_interval`.
#
# Extra arguments go to `bulkhead-loadtest compare` (see its --help), for example
#   scripts/compare-nats.sh --duration-secs 5 --json compare.json
# Every phase is bounded by --duration-secs (default 10 s) and --max-sends.
set -euo pipefail

cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
NATS_SERVER=${NATS_SERVER:-nats-server}

if [ "$NATS_SERVER" = nats-server ] && ! command -v nats-server >/dev/null 2>&1; then
	echo "installing nats-server (Debian package) for the comparison"
	$SUDO apt-get update -qq
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
fi

$CARGO build --release --bin bulkhead --bin bulkhead-loadtest --bin ceiling-ws --bin ceiling-rocksdb
TARGET=$($CARGO metadata --format-version 1 --no-deps |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release

WORK=$(mktemp -d -t bulkhead-compare-XXXXXX)
NATS_PIDS=()
stop_nats() {
	for pid in "${NATS_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap stop_nats EXIT

# Starts nats-server with the config file $1, logging to $2, and sets STARTED_PID and
# STARTED_ADDR. Port -1 lets nats-server pick a free port, which it then logs. Fails when the
# server exits first, such as on a config field it does not know (the message is in $2.out).
start_nats() {
	local config=$1 log=$2
	"$NATS_SERVER" -c "$config" -l "$log" >"$log.out" 2>&1 &
	local pid=$!
	NATS_PIDS+=("$pid")
	for _ in $(seq 100); do
		if ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		local addr
		addr=$(sed -n 's/.*Listening for client connections on \([0-9.]*:[0-9]*\).*/\1/p' "$log" 2>/dev/null | head -1)
		if [ -n "$addr" ]; then
			STARTED_PID=$pid
			STARTED_ADDR=$addr
			return 0
		fi
		sleep 0.1
	done
	return 1
}

write_config() {
	local file=$1 store=$2 extra=$3
	cat >"$file" <<CONF
host: 127.0.0.1
port: -1
jetstream {
  store_dir: "$store"
  $extra
}
CONF
}

NATS_VERSION=$("$NATS_SERVER" --version | awk '{print $2}')
write_config "$WORK/default.conf" "$WORK/js-default" ""
if ! start_nats "$WORK/default.conf" "$WORK/default.log"; then
	echo "nats-server did not start:" >&2
	cat "$WORK/default.log.out" "$WORK/default.log" >&2 2>/dev/null || true
	exit 2
fi
NATS_PID=$STARTED_PID
NATS_ADDR=$STARTED_ADDR

SYNCED_ARGS=()
write_config "$WORK/synced.conf" "$WORK/js-synced" "sync_interval: always"
if start_nats "$WORK/synced.conf" "$WORK/synced.log"; then
	SYNCED_ARGS=(--nats-synced "$STARTED_ADDR" --nats-synced-pid "$STARTED_PID")
else
	echo "nats-server $NATS_VERSION rejects sync_interval: always: $(head -1 "$WORK/synced.log.out")"
	echo "JetStream is measured with its default sync interval only."
fi

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), client and servers on the same cores"
echo "nats-server: $NATS_VERSION at $NATS_ADDR; bulkhead: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

"$TARGET/bulkhead-loadtest" compare \
	--spawn-server "$TARGET/bulkhead" \
	--nats "$NATS_ADDR" --nats-pid "$NATS_PID" \
	--nats-sync "$NATS_VERSION, default sync" \
	--compare-wal \
	"${SYNCED_ARGS[@]}" \
	--ceiling-ws "$TARGET/ceiling-ws" \
	--ceiling-rocksdb "$TARGET/ceiling-rocksdb" \
	"$@"
