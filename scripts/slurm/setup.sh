#!/usr/bin/env bash
# scripts/slurm/setup.sh - bring up a small real Slurm on this host for suanwang's
# Slurm engine: tests, CI and the native-rate benchmark.
#
# What it starts (each daemon listens on 127.0.0.1 only, checked at the end; nothing else is contacted):
#   munged (only if none answers), slurmdbd (accounting in MariaDB, so `sacct` works),
#   slurmctld, and one slurmd per simulated node (`slurmd -N name`, own port each):
#     partition "hpc": c1, c2   CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB           (default)
#     partition "gpu": g1       CPUs=$NODE_CPUS RealMemory=$GPU_NODE_MEM_MB Gres=gpu:a100:$GPUS
#   The GPUs are fake: /dev/null clones (char 1,3), pure bookkeeping that gres/AllocTRES see.
#
# Accounting: slurmdbd + MariaDB (127.0.0.1:3306, user root, empty password by default),
# because the issue asks usage from sacct (Elapsed, TotalCPU, MaxRSS, AllocTRES incl.
# gres/gpu).  jobacct_gather/linux samples every second, and OverMemoryKill turns a job
# that exceeds --mem into OUT_OF_MEMORY.
#
# Everything lives under $SUANWANG_SLURM_DIR (default /var/tmp/suanwang-slurm):
#   etc/slurm.conf etc/slurmdbd.conf etc/gres.conf   run/*.pid   log/   spool/   bin/
#   env   (a file to `source`: exports SLURM_CONF so the clients find this cluster)
# It never touches /etc/slurm, so it can share a host with another Slurm on other ports.
#
# Usage:  sudo scripts/slurm/setup.sh      then    source $SUANWANG_SLURM_DIR/env
#         sudo scripts/slurm/stop.sh                 (stops by the recorded pids)
# Knobs:  SUANWANG_SLURM_DIR CTLD_PORT DBD_PORT NODE_PORT_BASE NODE_CPUS NODE_MEM_MB
#         GPU_NODE_MEM_MB GPUS CPU_NODES DB_HOST DB_PORT DB_USER DB_PASS DB_NAME SKIP_INSTALL
set -euo pipefail

DIR=${SUANWANG_SLURM_DIR:-/var/tmp/suanwang-slurm}
CTLD_PORT=${CTLD_PORT:-6917}
DBD_PORT=${DBD_PORT:-6919}
NODE_PORT_BASE=${NODE_PORT_BASE:-21001}
NODE_CPUS=${NODE_CPUS:-16}
NODE_MEM_MB=${NODE_MEM_MB:-32768}
GPU_NODE_MEM_MB=${GPU_NODE_MEM_MB:-65536}
GPUS=${GPUS:-2}
CPU_NODES=${CPU_NODES:-2}
DB_HOST=${DB_HOST:-127.0.0.1}
DB_PORT=${DB_PORT:-3306}
DB_USER=${DB_USER:-root}
DB_PASS=${DB_PASS:-}
DB_NAME=${DB_NAME:-suanwang_slurm_acct}
CLUSTER=${CLUSTER:-suanwang}
SKIP_INSTALL=${SKIP_INSTALL:-0}

ETC=$DIR/etc RUN=$DIR/run LOG=$DIR/log SPOOL=$DIR/spool BIN=$DIR/bin
CONF=$ETC/slurm.conf
export SLURM_CONF=$CONF

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (munge key, daemons)" >&2; exit 1; }
t_start=$(date +%s.%N)
elapsed() { awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

if [ -s "$RUN/slurmctld.pid" ] && kill -0 "$(cat "$RUN/slurmctld.pid")" 2>/dev/null; then
  echo "setup.sh: a cluster from $DIR is still running; run scripts/slurm/stop.sh first" >&2; exit 1
fi

# ------------------------------------------------------------------ packages
if [ "$SKIP_INSTALL" != 1 ] && ! dpkg -s slurmctld slurmd slurm-client slurmdbd munge >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  pkgs="slurm-wlm slurmctld slurmd slurm-client slurmdbd munge"
  # apt-get update only when the package lists do not know the packages yet.
  apt-cache show slurmctld >/dev/null 2>&1 || apt-get update -qq
  # In containers policy-rc.d keeps the packages' own units from starting; we start the daemons.
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  echo "installed $pkgs ($(elapsed) s)"
fi
command -v mysql >/dev/null || { echo "setup.sh: needs a MariaDB/MySQL client and server at $DB_HOST:$DB_PORT" >&2; exit 1; }
if ! mysql -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" ${DB_PASS:+-p"$DB_PASS"} -e 'SELECT 1' >/dev/null 2>&1; then
  echo "setup.sh: MariaDB/MySQL not reachable at $DB_HOST:$DB_PORT as $DB_USER (slurmdbd keeps the" \
       "accounting that sacct reads there; set DB_HOST DB_PORT DB_USER DB_PASS)" >&2
  exit 1
fi

# Debian names the daemons slurmctld-wlm etc.  Slurm decides "am I a daemon" from the program
# name, and started as *-wlm it silently drops every Gres= on NodeName lines; if the emulator
# package is installed the alternatives point to a front-end build.  Private symlinks with the
# canonical names avoid both.
mkdir -p "$ETC" "$RUN" "$LOG" "$SPOOL/state" "$BIN" "$RUN/fakegpu"
for d in slurmctld slurmd slurmstepd slurmdbd; do
  src=/usr/sbin/$d-wlm; [ -x "$src" ] || src=/usr/sbin/$d
  ln -sfn "$src" "$BIN/$d"
done
rm -rf "${SPOOL:?}/state/"* "${SPOOL:?}"/node-*
: > "$LOG/slurmctld.log"

# ------------------------------------------------------------------ munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
rm -f "$RUN/munged.pid"
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "munged already answers (not ours; stop.sh leaves it)"
else
  mkdir -p /run/munge; chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  cp /run/munge/munged.pid "$RUN/munged.pid"
  echo "munged started, pid $(cat "$RUN/munged.pid")"
fi

# ------------------------------------------------------------------ configs
CPU_RANGE="c[1-$CPU_NODES]"; [ "$CPU_NODES" = 1 ] && CPU_RANGE=c1
LAST_CPU_PORT=$((NODE_PORT_BASE + CPU_NODES - 1))
GPU_PORT=$((LAST_CPU_PORT + 1))
cat > "$CONF" <<EOF
# generated by suanwang scripts/slurm/setup.sh - $CPU_NODES CPU nodes + 1 GPU node on 127.0.0.1
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
# Listen on 127.0.0.1, not every interface: NoCtldInAddrAny for slurmctld (NoInAddrAny alone leaves it on
# 0.0.0.0), NoInAddrAny for slurmd (binds its NodeAddr).  Checked once the daemons are up.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
# cgroups are not usable in every sandbox/CI; linuxproc tracks by parent pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
# a job above its --mem is killed at the next sample and ends OUT_OF_MEMORY
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
StateSaveLocation=$SPOOL/state
SlurmdSpoolDir=$SPOOL/node-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SchedulerType=sched/backfill
PriorityType=priority/basic
# trust the configured CPUs/memory/GPUs, not the real (2-core) hardware
SlurmdParameters=config_overrides
GresTypes=gpu
ReturnToService=2
MaxJobCount=100000
# finished jobs leave slurmctld after 2 s; sacct (slurmdbd) keeps them
MinJobAge=2
KillWait=2
SlurmdTimeout=300
InactiveLimit=0
NodeName=$CPU_RANGE NodeHostname=localhost NodeAddr=127.0.0.1 Port=$NODE_PORT_BASE-$LAST_CPU_PORT CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB State=UNKNOWN
NodeName=g1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$GPU_PORT CPUs=$NODE_CPUS RealMemory=$GPU_NODE_MEM_MB Gres=gpu:a100:$GPUS State=UNKNOWN
PartitionName=hpc Nodes=$CPU_RANGE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=g1 MaxTime=INFINITE State=UP
EOF

# slurmd 22.05 drops GPUs without device files (node INVAL, "count reported lower than
# configured"), and File= must be a char/block device: /dev/null clones.
for i in $(seq 0 $((GPUS - 1))); do
  [ -c "$RUN/fakegpu/nvidia$i" ] || mknod "$RUN/fakegpu/nvidia$i" c 1 3
done
cat > "$ETC/gres.conf" <<EOF
NodeName=g1 Name=gpu Type=a100 File=$RUN/fakegpu/nvidia[0-$((GPUS - 1))]
EOF

# slurmdbd reads slurmdbd.conf from SLURM_CONF's directory; it must be 0600 and owned by SlurmUser.
cat > "$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
# bind the address this host's name resolves to (127.0.0.1 here, checked below), not every interface
CommunicationParameters=NoInAddrAny
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=$DB_HOST
StoragePort=$DB_PORT
StorageUser=$DB_USER
$( [ -n "$DB_PASS" ] && echo "StoragePass=$DB_PASS" )
StorageLoc=$DB_NAME
EOF
chmod 600 "$ETC/slurmdbd.conf"

cat > "$DIR/env" <<EOF
export SLURM_CONF=$CONF
export SUANWANG_SLURM_DIR=$DIR
EOF

# ------------------------------------------------------------------ daemons
mysql -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" ${DB_PASS:+-p"$DB_PASS"} \
  -e "CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`"
"$BIN/slurmdbd"
for _ in $(seq 1 300); do sacctmgr -n -P list cluster >/dev/null 2>&1 && break; sleep 0.1; done
sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
echo "slurmdbd up, pid $(cat "$RUN/slurmdbd.pid") ($(elapsed) s)"

# Job ids restart at 1 with a fresh StateSaveLocation, but slurmdbd remembers the old jobs:
# `sacct -j 5` would then answer for a previous cluster's job 5.  Continue after the highest id.
last=$(mysql -N -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" ${DB_PASS:+-p"$DB_PASS"} \
  -e "SELECT COALESCE(MAX(id_job),0) FROM \`$DB_NAME\`.\`${CLUSTER}_job_table\`" 2>/dev/null || echo 0)
echo "FirstJobId=$((last + 1))" >> "$CONF"

"$BIN/slurmctld"
for _ in $(seq 1 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
echo "slurmctld up, pid $(cat "$RUN/slurmctld.pid") ($(elapsed) s)"

NAMES=$(scontrol show hostnames "$CPU_RANGE,g1")
for n in $NAMES; do
  "$BIN/slurmd" -N "$n" -d "$BIN/slurmstepd"
done
want=$(echo "$NAMES" | wc -w)
for _ in $(seq 1 300); do
  idle=$(sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
  [ "$idle" -ge "$want" ] && break
  sleep 0.1
done
echo "$idle/$want nodes idle; setup took $(elapsed) s"
sinfo -o '%10P %6D %6c %8m %16G %8t %N' | sed 's/^/  /'
if [ "$idle" -lt "$want" ]; then sinfo -R; exit 2; fi

# Every daemon started here must listen on loopback only (a test cluster with munge's default key and
# root as SlurmUser must not be reachable from the network).
if command -v ss >/dev/null; then
  pids=$(cat "$RUN"/slurmd-*.pid "$RUN/slurmctld.pid" "$RUN/slurmdbd.pid" 2>/dev/null | paste -sd'|')
  open=$(ss -Hltnp 2>/dev/null | grep -E "pid=($pids)," | awk '{print $4}' | grep -v -E '^(127\.[0-9.]+|\[::1\]):' || true)
  if [ -n "$open" ]; then
    echo "setup.sh: Slurm daemons listen beyond loopback: $open (check /etc/hosts: $(hostname) must resolve" \
         "to 127.0.0.1)" >&2
    exit 3
  fi
  echo "listening on loopback only: $(ss -Hltnp 2>/dev/null | grep -E "pid=($pids)," | awk '{print $4}' | sort | paste -sd' ')"
fi
echo "now: source $DIR/env"
