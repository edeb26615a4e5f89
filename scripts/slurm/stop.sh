#!/usr/bin/env bash
# scripts/slurm/stop.sh - stop what scripts/slurm/setup.sh started, by the pids it recorded
# (slurmd-*.pid, slurmctld.pid, slurmdbd.pid, and munged.pid only if setup started munged).
# Never by process name: other Slurm daemons on this host are left alone.
set -u
DIR=${SUANWANG_SLURM_DIR:-/var/tmp/suanwang-slurm}
RUN=$DIR/run

pids=()
for f in "$RUN"/slurmd-*.pid "$RUN/slurmctld.pid" "$RUN/slurmdbd.pid" "$RUN/munged.pid"; do
  [ -s "$f" ] || continue
  p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null && kill "$p"; then pids+=("$p"); fi
  rm -f "$f"
done
alive=()
for _ in $(seq 1 100); do
  alive=(); for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
  [ ${#alive[@]} -eq 0 ] && break
  sleep 0.1
done
for p in "${alive[@]}"; do kill -9 "$p" 2>/dev/null; done
echo "stopped ${#pids[@]} daemons (${#alive[@]} needed SIGKILL)"
