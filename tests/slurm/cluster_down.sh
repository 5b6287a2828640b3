#!/usr/bin/env bash
# Stop the cluster started by cluster_up.sh: cancel its jobs by id, then stop slurmd, slurmctld
# and munged by the PIDs in their pid files (checked against /proc/PID/comm), never by name.
#   --purge   also wipe SLURM state, spool and logs (job ids restart at 1)
set -euo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
log() { echo "[cluster_down $(date +%T)] $*"; }
[ "$(id -u)" = 0 ] || { echo "[cluster_down] needs root" >&2; exit 1; }

alive() {
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
stop() {  # stop PIDFILE COMM: TERM, wait up to 20 s, then KILL; always drop the pid file
  local pid i
  if ! alive "$1" "$2"; then rm -f "$1"; return 0; fi
  pid="$(cat "$1")"
  log "stopping $2 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 40); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
  if [ -d "/proc/$pid" ]; then log "$2 ignored TERM; KILL $pid"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$1"   # slurmctld (user slurm) leaves its pid file behind; apt's prerm trips on it
}

if alive /run/slurmctld.pid slurmctld; then
  ids="$(squeue -h -t PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED -o %i 2>/dev/null || true)"
  if [ -n "$ids" ]; then
    log "cancelling jobs $(echo $ids)"
    # shellcheck disable=SC2086
    scancel $ids || true
    for i in $(seq 1 30); do
      [ -z "$(squeue -h -t PENDING,RUNNING,CONFIGURING,COMPLETING -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
fi
stop /run/slurmd.pid slurmd
stop /run/slurmctld.pid slurmctld
stop /run/munge/munged.pid munged
if [ "${1:-}" = "--purge" ]; then
  rm -rf /var/spool/slurmctld/* /var/spool/slurmd/* /var/log/slurm/*
  log "state purged"
fi
log "down"
