#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on this machine (munged + slurmctld + slurmd), for
# kdtransfer's cluster test. Debian/Ubuntu, root, no systemd needed. Idempotent.
#
#   tests/slurm/cluster_up.sh            # install if missing, configure, start, wait until idle
#   KDT_SLURM_NO_INSTALL=1 ...           # fail instead of running apt-get
#
# Exit status: 0 up; 3 SLURM is not installed and cannot be (not root, no apt-get, apt failed):
# callers skip the cluster test; anything else is a real failure of an installed SLURM.
#
# Knobs: KDT_SLURM_PARTITION [kdtci], KDT_SLURM_GPUS (count-only fake GPUs) [2],
#        KDT_SLURM_MEM_PERCENT of RAM given to the node [80], KDT_SLURM_WAIT_S [60].
# Stop with tests/slurm/cluster_down.sh (by PID, never by name).
set -euo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
here="$(cd "$(dirname "$0")" && pwd)"
PARTITION="${KDT_SLURM_PARTITION:-kdtci}"
GPUS="${KDT_SLURM_GPUS:-2}"
MEM_PERCENT="${KDT_SLURM_MEM_PERCENT:-80}"
WAIT_S="${KDT_SLURM_WAIT_S:-60}"
t0=$(date +%s)
log() { echo "[cluster_up $(date +%T)] $*"; }
die() { echo "[cluster_up] ERROR: $*" >&2; exit 1; }
cannot() { echo "[cluster_up] CANNOT INSTALL: $*" >&2; exit 3; }

[ "$(id -u)" = 0 ] || cannot "needs root (installs packages, starts munged, slurmctld, slurmd)"

# alive PIDFILE COMM: the pid in PIDFILE runs and is COMM (a recycled pid never matches)
alive() {
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
stop() {  # stop PIDFILE COMM
  local pid i
  if alive "$1" "$2"; then
    pid="$(cat "$1")"; kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

# ---- packages -------------------------------------------------------------------------------
pkgs=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "${KDT_SLURM_NO_INSTALL:-0}" = 1 ] && cannot "not installed (KDT_SLURM_NO_INSTALL=1): ${missing[*]}"
  command -v apt-get >/dev/null || cannot "no apt-get to install ${missing[*]}"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_log="$(mktemp)"
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2; rm -f "$apt_log"
    cannot "apt-get could not install ${missing[*]} (no package source reachable?)"
  fi
  rm -f "$apt_log"
fi
log "slurm $(dpkg-query -W -f='${Version}' slurmctld), munge $(dpkg-query -W -f='${Version}' munge)"

# ---- munge (policy-rc.d blocks service starts in containers: start it by hand) ---------------
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
  for i in $(seq 1 40); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
  munge -n | unmunge >/dev/null || die "munge does not work (/var/log/munge/munged.log)"
fi

# ---- slurm.conf + gres.conf from the templates and `slurmd -C` -------------------------------
install -d -m 0755 /etc/slurm
install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld /var/log/slurm
install -d -m 0755 /var/spool/slurmd
node="$(hostname -s)"
hw="$(slurmd -C | head -n 1)"   # NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ...
field() { sed -nE "s/.*[[:space:]]$1=([0-9]+).*/\1/p" <<<"$hw"; }
cpus=$(field CPUs); mem=$(field RealMemory)
[ -n "$cpus" ] && [ -n "$mem" ] || die "cannot parse 'slurmd -C': $hw"
fill() {
  sed -e "s/@NODE@/$node/g" -e "s/@CPUS@/$cpus/g" -e "s/@BOARDS@/$(field Boards)/g" \
      -e "s/@SOCKETS@/$(field SocketsPerBoard)/g" -e "s/@CORES@/$(field CoresPerSocket)/g" \
      -e "s/@THREADS@/$(field ThreadsPerCore)/g" -e "s/@MEM@/$(( mem * MEM_PERCENT / 100 ))/g" \
      -e "s/@GPUS@/$GPUS/g" -e "s/@GPULAST@/$(( GPUS - 1 ))/g" -e "s#@GPUDIR@#$gpudir#g" -e "s/@PARTITION@/$PARTITION/g" "$1"
}
gpudir=/run/kdtci-fake-gpus
install -d -m 0755 "$gpudir"
for i in $(seq 0 $(( GPUS - 1 ))); do [ -e "$gpudir/gpu$i" ] || : >"$gpudir/gpu$i"; done
changed=0
for f in slurm.conf gres.conf; do
  new="$(mktemp)"; fill "$here/$f.in" >"$new"
  if ! cmp -s "$new" "/etc/slurm/$f"; then install -m 0644 "$new" "/etc/slurm/$f"; changed=1; fi
  rm -f "$new"
done

# ---- daemons ------------------------------------------------------------------------------
if [ "$changed" = 1 ]; then
  log "configuration written; (re)starting slurmd and slurmctld"
  stop /run/slurmd.pid slurmd
  stop /run/slurmctld.pid slurmctld
fi
if ! alive /run/slurmctld.pid slurmctld; then
  rm -f /run/slurmctld.pid        # runs as user slurm, cannot remove its own stale pid file
  /usr/sbin/slurmctld
fi
alive /run/slurmd.pid slurmd || /usr/sbin/slurmd

deadline=$(( $(date +%s) + WAIT_S )); state=""
while :; do
  if scontrol ping 2>/dev/null | grep -q "is UP"; then
    state="$(sinfo -h -N -n "$node" -o %t 2>/dev/null | head -n 1 || true)"
    case "$state" in
      idle|mix|alloc|comp) break ;;
      down*|drain*|drng*|fail*) scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;;
    esac
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    die "node $node not ready after ${WAIT_S}s (state '$state')"
  fi
  sleep 0.5
done
out="$(timeout 60 srun -p "$PARTITION" -n1 -t 1 --gpus=1 hostname)" || die "srun --gpus=1 smoke test failed"
log "node $node $state: $cpus CPUs, $GPUS count-only GPUs, partition $PARTITION; srun --gpus=1 ran on $out"
log "up in $(( $(date +%s) - t0 ))s (slurmctld $(cat /run/slurmctld.pid), slurmd $(cat /run/slurmd.pid), munged $(cat /run/munge/munged.pid 2>/dev/null || echo '?'))"
