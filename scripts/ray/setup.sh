#!/usr/bin/env bash
# scripts/ray/setup.sh - start a local Ray head (GCS, raylet, dashboard + Jobs API) for
# suanwang's Ray engine: tests, CI and the native-rate benchmark.
#
# It runs `ray start --head --block` in its own session and records that pid; stop.sh sends
# it SIGTERM (ray start --block then stops every process it started) and then signals the
# recorded process group, by id.  It never runs `ray stop`, which kills every Ray on the host.
#
# Usage:  scripts/ray/setup.sh        Jobs API then at http://127.0.0.1:$DASH_PORT
#         scripts/ray/stop.sh
# Knobs:  SUANWANG_RAY_DIR (default /var/tmp/suanwang-ray), RAY_BIN (default: `ray` on PATH),
#         GCS_PORT 6479, DASH_PORT 8365, NUM_CPUS 4, NUM_GPUS 2 (logical: Ray only counts
#         them and sets CUDA_VISIBLE_DEVICES), OBJECT_STORE_MB 200
set -euo pipefail
DIR=${SUANWANG_RAY_DIR:-/var/tmp/suanwang-ray}
RAY_BIN=${RAY_BIN:-$(command -v ray || true)}
GCS_PORT=${GCS_PORT:-6479}
DASH_PORT=${DASH_PORT:-8365}
NUM_CPUS=${NUM_CPUS:-4}
NUM_GPUS=${NUM_GPUS:-2}
OBJECT_STORE_MB=${OBJECT_STORE_MB:-200}
[ -n "$RAY_BIN" ] || { echo "setup.sh: no 'ray' on PATH (pip install 'ray[default]', or set RAY_BIN)" >&2; exit 1; }
t0=$(date +%s.%N)
mkdir -p "$DIR/run" "$DIR/log" "$DIR/tmp"
if [ -s "$DIR/run/ray.pid" ] && kill -0 "$(cat "$DIR/run/ray.pid")" 2>/dev/null; then
  echo "setup.sh: a Ray head from $DIR is still running; run scripts/ray/stop.sh first" >&2; exit 1
fi

RAY_USAGE_STATS_ENABLED=0 setsid "$RAY_BIN" start --head --block \
  --node-ip-address=127.0.0.1 --port="$GCS_PORT" \
  --dashboard-host=127.0.0.1 --dashboard-port="$DASH_PORT" --include-dashboard=true \
  --num-cpus="$NUM_CPUS" --num-gpus="$NUM_GPUS" \
  --object-store-memory=$((OBJECT_STORE_MB * 1024 * 1024)) \
  --temp-dir="$DIR/tmp" --disable-usage-stats >"$DIR/log/ray-start.log" 2>&1 &
echo $! > "$DIR/run/ray.pid"

ok=""
for _ in $(seq 1 600); do
  kill -0 "$(cat "$DIR/run/ray.pid")" 2>/dev/null || break
  if curl -fsS "http://127.0.0.1:$DASH_PORT/api/jobs/" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
if [ -z "$ok" ]; then
  echo "setup.sh: Ray head did not come up; log:" >&2; tail -20 "$DIR/log/ray-start.log" >&2; exit 2
fi
cat > "$DIR/env" <<ENV
export SUANWANG_RAY_ADDRESS=http://127.0.0.1:$DASH_PORT
export RAY_ADDRESS=127.0.0.1:$GCS_PORT
ENV
echo "Ray head up (pid $(cat "$DIR/run/ray.pid")), Jobs API http://127.0.0.1:$DASH_PORT," \
  "$NUM_CPUS CPUs $NUM_GPUS GPUs; setup took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
