#!/usr/bin/env bash
# scripts/ray/stop.sh - stop the Ray head scripts/ray/setup.sh started: SIGTERM to the recorded
# `ray start --block` pid (it stops its own daemons), then its process group, all by id.
set -u
DIR=${SUANWANG_RAY_DIR:-/var/tmp/suanwang-ray}
PIDF=$DIR/run/ray.pid
[ -s "$PIDF" ] || { echo "no Ray head recorded in $DIR"; exit 0; }
p=$(cat "$PIDF")
kill -TERM "$p" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
# stragglers in the session setsid made (its pgid is the recorded pid)
kill -TERM -- "-$p" 2>/dev/null && sleep 1
kill -KILL -- "-$p" 2>/dev/null
rm -f "$PIDF"
echo "stopped Ray head $p"
