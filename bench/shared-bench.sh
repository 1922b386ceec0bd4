#!/usr/bin/env bash
# Puts Guildgate, built from this checkout, in the project slot of the side-by-side bench that sits
# beside the repository (../shared/bench: wrk, a fast fake upstream, a bare undici forwarder, nginx,
# Portkey). The relay runs from dist/ (`npm run build`) on a fresh SQLite file with one key whose tier
# never refuses, so every limit is checked on every request but none refuses.
#
#   bench/shared-bench.sh memory [run.sh flags...]    # in-process limits
#   bench/shared-bench.sh redis  [run.sh flags...]    # Redis limits on a redis-server started here
#   GG_BENCH_STORE=/tmp/big.db bench/shared-bench.sh memory   # on a copy of a seeded store (npm run bench:seed)
#
# With `redis`, Redis's own CPU per relayed request is printed after the run (the bench samples only
# the relay's pid), so cost moved into Redis stays visible.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${SHARED_BENCH:-$REPO/../shared/bench}"
MODE="${1:-memory}"
shift || true
case "$MODE" in memory | redis) ;; *) echo "usage: $0 memory|redis [run.sh flags...]" >&2; exit 2 ;; esac
[ -x "$BENCH/run.sh" ] || { echo "no bench at $BENCH (set SHARED_BENCH)" >&2; exit 2; }

(cd "$REPO" && npm run --silent build)

DIR="$(mktemp -d /tmp/gg-shared-bench.XXXXXX)"
REDIS_PID=""
cleanup() {
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

PORT=18090
LIMITS=memory
export -n REDIS_URL MONGODB_URI 2>/dev/null || true
unset REDIS_URL MONGODB_URI
if [ "$MODE" = redis ]; then
  REDIS_PORT=18091
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$DIR" --logfile "$DIR/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  LIMITS=redis
fi

cat >"$DIR/guildgate.json" <<JSON
{
  "server": { "host": "127.0.0.1", "port": $PORT, "shutdownGraceMs": 2000 },
  "dataDir": "$DIR/data",
  "storage": { "store": "sqlite", "limits": "$LIMITS" },
  "defaultTier": "bench",
  "tiers": {
    "bench": { "rpm": 100000000, "maxConcurrent": 10000, "tokensPerDay": 1000000000000, "maxTokens": 256, "models": ["*"] }
  },
  "upstreams": { "fake": { "baseUrl": "http://127.0.0.1:18080/v1", "connections": 64 } },
  "models": {
    "gpt-4o-mini": { "routes": [{ "upstream": "fake", "model": "gpt-4o-mini" }] },
    "text-embedding-3-small": { "kind": "embedding", "routes": [{ "upstream": "fake", "model": "text-embedding-3-small" }] }
  }
}
JSON
if [ -n "${GG_BENCH_STORE:-}" ]; then
  mkdir -p "$DIR/data"
  cp "$GG_BENCH_STORE" "$DIR/data/guildgate.db"
fi
export GUILDGATE_CONFIG="$DIR/guildgate.json" LOG_LEVEL=warn
KEY="$(cd "$DIR" && node "$REPO/bin/guildgate.mjs" keys issue --discord-id 100000000000000001 --json |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s).key))')"

redis_cpu() { redis-cli -p "$REDIS_PORT" info cpu | awk -F: '/used_cpu_(user|sys):/{s+=$2} END{printf "%.3f", s}'; }
[ "$MODE" = redis ] && CPU0="$(redis_cpu)"

STAMP_BEFORE="$(ls -1 "$BENCH/results" 2>/dev/null | tail -1 || true)"
(cd "$DIR" && "$BENCH/run.sh" --project-url="http://127.0.0.1:$PORT/v1" --project-key="$KEY" \
  --project-name="guildgate-$MODE" --project-cmd="cd '$DIR' && exec node '$REPO/dist/src/main.js'" "$@")

if [ "$MODE" = redis ]; then
  CPU1="$(redis_cpu)"
  LATEST="$(ls -1 "$BENCH/results" | tail -1)"
  [ "$LATEST" != "$STAMP_BEFORE" ] && node -e '
    const r = require(process.argv[1]);
    const n = r.runs.filter((x) => x.target === process.argv[2]).reduce((a, x) => a + (x.requests || 0), 0);
    const s = Number(process.argv[4]) - Number(process.argv[3]);
    console.log(`redis-server CPU: ${s.toFixed(2)} s over ${n} measured relay requests (warm-ups and smoke checks included in the CPU): <= ${Math.round((s * 1e6) / n)} us/request`);
  ' "$BENCH/results/$LATEST/results.json" "guildgate-$MODE" "$CPU0" "$CPU1"
fi
