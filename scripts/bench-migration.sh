#!/usr/bin/env bash
# Measures a live tier migration: how long the migrating tenant's writes wait, and what
# latency a neighbour running the steady load gets meanwhile.
#
# It builds a tenant of 200,000 messages offline with `bulkhead import`, starts the server on
# 127.0.0.1, runs `bulkhead-loadtest steady` once without a migration, then once per move
# (cf -> shared -> dedicated -> cf) with the move started 2 s into the run.
#
# Usage: make bench-migration, or scripts/bench-migration.sh [TARGET_DIR] after a release build
# (TARGET_DIR defaults to $CARGO_TARGET_DIR, else ./target).
set -euo pipefail

bin="${1:-${CARGO_TARGET_DIR:-target}}/release"
port=18181
url="http://127.0.0.1:$port"
work="$(mktemp -d)"
export BULKHEAD_ADMIN_TOKEN="bench-migration-$(date +%s)"
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT

start_server() {
  "$bin/bulkhead" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >>"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 50); do curl -sf "$url/healthz" >/dev/null && return; sleep 0.1; done
  echo "the server did not start; see $work/server.log" >&2
  exit 1
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" || true
  server_pid=""
}

# 100 users, 20 group conversations of 5 members, 10,000 messages each with a 240-byte text.
python3 - "$work/big.ndjson" <<'PY'
import json, sys
out = open(sys.argv[1], "w")
line = lambda obj: out.write(json.dumps(obj) + "\n")
line({"type": "header", "format": 1, "tenant": "big", "masked": False, "exported_at_ms": 1767225600000})
for u in range(100):
    line({"type": "user", "id": f"u{u:03}", "display_name": None, "created_at_ms": 1})
for c in range(20):
    members = sorted(f"u{(c * 5 + i) % 100:03}" for i in range(5))
    line({"type": "conversation", "id": f"c{c:02}", "kind": "group", "name": None, "members": members, "created_at_ms": 2})
    for seq in range(1, 10001):
        line({"type": "message", "conv": f"c{c:02}", "seq": seq, "from": members[seq % 5],
              "client_msg_id": f"m{c}-{seq}", "ts": 1767225600000 + seq, "body": {"text": "x" * 240}})
line({"type": "end", "users": 100, "conversations": 20, "messages": 200000, "read_markers": 0})
PY

start_server
curl -sf -X POST "$url/v1/tenants" -H "Authorization: Bearer $BULKHEAD_ADMIN_TOKEN" \
  -H 'content-type: application/json' -d '{"id":"big","name":"Big","tier":"cf"}' >/dev/null
stop_server
"$bin/bulkhead" import --data-dir "$work/data" --tenant big --file "$work/big.ndjson"
start_server

neighbour() {
  "$bin/bulkhead-loadtest" steady --url "$url" --duration-secs 6 --connections 4 --window 1 \
    --messages 1000000 2>&1 | grep -E '^total +ack' | sed 's/^total *ack */neighbour ack ms p50 p90 p99 p99.9 max count: /'
}

echo "no migration"
neighbour
for tier in shared dedicated cf; do
  echo "move to $tier"
  (
    sleep 2
    curl -sf -X POST "$url/v1/tenants/big/migrate" -H "Authorization: Bearer $BULKHEAD_ADMIN_TOKEN" \
      -H 'content-type: application/json' -d "{\"tier\":\"$tier\"}" |
      python3 -c 'import json, sys
d = json.load(sys.stdin)
print("  %s -> %s: %d keys, writes paused %d ms" % (d["from"], d["to"], d["keys_copied"], d["writes_paused_ms"]))'
  ) &
  mover=$!
  neighbour
  wait "$mover"
done
