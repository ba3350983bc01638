#!/usr/bin/env bash
# A real SLURM cluster on this one machine, for fetchshard's SLURM tests (and for trying the
# templates in slurm/ by hand). Follows shared/notes/local-slurm.md. Needs root (Debian/Ubuntu).
#
#   tests/slurm/cluster.sh up [NODES]   install if needed, start munge + slurmctld + NODES
#                                       slurmd (default 4), wait until every node is idle
#   tests/slurm/cluster.sh down         cancel all jobs, stop what `up` started (by PID)
#   tests/slurm/cluster.sh status       sinfo, or "down" (exit 3)
#
# Everything it writes: /etc/slurm/slurm.conf (an existing foreign one is kept once as
# slurm.conf.fetchshard-bak), /var/spool/slurm-local, /var/log/slurm-local, /run/slurm-local,
# and a munge key if there is none. Daemons are only ever signalled by the PIDs in their pid
# files (and only when /proc/PID/comm is the expected program), never by name.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="${CONF_DIR}/slurm.conf"
BACKUP="${CONF}.fetchshard-bak"
MARKER="# written by fetchshard tests/slurm/cluster.sh"
SPOOL=/var/spool/slurm-local
LOGDIR=/var/log/slurm-local
RUNDIR=/run/slurm-local
CTLD_PID="${RUNDIR}/slurmctld.pid"
MUNGED_PID="${RUNDIR}/munged.pid" # present only when this script started munged
MUNGE_KEY=/etc/munge/munge.key
PORT_BASE=17000
IDLE_WAIT=60 # seconds `up` waits for every node to be idle
STOP_WAIT=30 # seconds `down` waits for daemons to exit before SIGKILL

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- processes, by PID only -------------------------------------------------------------
# alive PIDFILE NAME: the PID in PIDFILE runs and is the program NAME (guards against reuse).
alive() {
  local pidfile=$1 name=$2 pid comm
  pid=$(tr -dc '0-9' 2>/dev/null <"$pidfile") || return 1 # gone: a daemon removes it on exit
  [[ -n $pid ]] || return 1
  comm=$(cat "/proc/${pid}/comm" 2>/dev/null) || return 1
  [[ $comm == "$name" ]]
}

pid_of() { tr -dc '0-9' 2>/dev/null <"$1" || true; }

# our_pidfiles: "PIDFILE NAME" lines for the slurm daemons of the current config.
slurm_pidfiles() {
  echo "${CTLD_PID} slurmctld"
  local f
  for f in "${RUNDIR}"/slurmd-*.pid; do
    if [[ -e $f ]]; then echo "$f slurmd"; fi
  done
}

# stop_pidfiles: SIGTERM every live daemon listed on stdin, wait (bounded), then SIGKILL.
stop_pidfiles() {
  local entries=() pidfile name pid deadline left
  while read -r pidfile name; do
    entries+=("$pidfile $name")
  done
  ((${#entries[@]})) || return 0
  for entry in "${entries[@]}"; do
    read -r pidfile name <<<"$entry"
    if alive "$pidfile" "$name"; then
      pid=$(pid_of "$pidfile")
      log "SIGTERM ${name} (pid ${pid})"
      [[ -z $pid ]] || kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  deadline=$((SECONDS + STOP_WAIT))
  while :; do
    left=0
    for entry in "${entries[@]}"; do
      read -r pidfile name <<<"$entry"
      if alive "$pidfile" "$name"; then left=1; fi
    done
    ((left)) || break
    if ((SECONDS >= deadline)); then
      for entry in "${entries[@]}"; do
        read -r pidfile name <<<"$entry"
        if alive "$pidfile" "$name"; then
          pid=$(pid_of "$pidfile")
          log "${name} (pid ${pid}) still alive after ${STOP_WAIT}s: SIGKILL"
          [[ -z $pid ]] || kill -KILL "$pid" 2>/dev/null || true
        fi
      done
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  for entry in "${entries[@]}"; do
    read -r pidfile name <<<"$entry"
    if ! alive "$pidfile" "$name"; then rm -f "$pidfile"; fi
  done
}

# --- cluster state ----------------------------------------------------------------------
have_tools() {
  command -v srun >/dev/null && command -v sinfo >/dev/null && command -v slurmctld >/dev/null &&
    command -v slurmd >/dev/null && command -v munged >/dev/null
}

ours() { [[ -r $CONF ]] && grep -qxF "$MARKER" "$CONF"; }

# node_states: one state per node (sinfo -h -N -o %T), or fail.
node_states() { timeout 10 sinfo -h -N -o %T 2>/dev/null; }

all_idle() {
  local states
  states=$(node_states) || return 1
  [[ -n $states ]] || return 1
  ! grep -qvx idle <<<"$states"
}

# all_healthy: every node is idle or running jobs (none down, drained or not responding).
all_healthy() {
  local states
  states=$(node_states) || return 1
  [[ -n $states ]] || return 1
  ! grep -qvxE 'idle|allocated|mixed|completing' <<<"$states"
}

node_count() {
  local states
  states=$(node_states) || return 1
  grep -c . <<<"$states"
}

summary() {
  local n version
  n=$(node_count || echo 0)
  version=$(timeout 10 sinfo --version 2>/dev/null || echo slurm)
  echo "slurm cluster up: ${n} nodes n[1-${n}] on $(hostname -s) (127.0.0.1), partition debug," \
    "${version}, $1"
}

# --- up ---------------------------------------------------------------------------------
install_packages() {
  have_tools && return 0
  local pkgs=(slurmctld slurmd slurm-client munge)
  local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends)
  log "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! timeout 900 "${apt[@]}" "${pkgs[@]}"; then
    log "install failed: apt-get update, then retry"
    timeout 900 apt-get -o DPkg::Lock::Timeout=600 update
    timeout 900 "${apt[@]}" "${pkgs[@]}"
  fi
  have_tools || die "slurm tools still missing after install"
}

munge_works() { timeout 10 munge -n 2>/dev/null | timeout 10 unmunge >/dev/null 2>&1; }

start_munge() {
  if [[ ! -s $MUNGE_KEY ]]; then
    log "creating ${MUNGE_KEY}"
    install -d -o munge -g munge -m 0700 /etc/munge
    timeout 30 mungekey --create --keyfile="$MUNGE_KEY"
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
  fi
  if munge_works; then
    return 0 # already running (ours from an earlier `up`, or someone else's: left alone)
  fi
  install -d -o munge -g munge /run/munge
  log "starting munged"
  timeout 30 runuser -u munge -- /usr/sbin/munged </dev/null >>"${LOGDIR}/munged.stdout" 2>&1
  for _ in $(seq 50); do
    munge_works && break
    sleep 0.1
  done
  munge_works || die "munged does not answer (see /var/log/munge/munged.log)"
  [[ -s /run/munge/munged.pid ]] || die "munged started but wrote no /run/munge/munged.pid"
  pid_of /run/munge/munged.pid >"$MUNGED_PID"
}

write_conf() {
  local nodes=$1 host mem_kb real_mem
  host=$(hostname -s)
  mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  real_mem=$((mem_kb * 9 / 10 / 1024 / nodes))
  install -d "$CONF_DIR"
  if [[ -e $CONF ]] && ! ours && [[ ! -e $BACKUP ]]; then
    log "keeping the existing ${CONF} as ${BACKUP}"
    cp -p "$CONF" "$BACKUP"
  fi
  cat >"${CONF}.tmp" <<EOF
${MARKER}
# ${nodes} emulated nodes on this host; see shared/notes/local-slurm.md. Rewritten by every \`up\`.
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=${SPOOL}/ctld
SlurmdSpoolDir=${SPOOL}/d/%n
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${RUNDIR}/slurmd-%n.pid
SlurmctldLogFile=${LOGDIR}/slurmctld.log
SlurmdLogFile=${LOGDIR}/slurmd-%n.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=5
MinJobAge=300
InactiveLimit=0
OverTimeLimit=0
NodeName=n[1-${nodes}] NodeHostname=${host} NodeAddr=127.0.0.1 Port=[$((PORT_BASE + 1))-$((PORT_BASE + nodes))] CPUs=8 RealMemory=${real_mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "${CONF}.tmp" "$CONF"
}

cmd_up() {
  local nodes=${1:-4} started=$SECONDS k
  [[ $nodes =~ ^[1-9][0-9]*$ ]] || die "NODES must be a positive integer, not '${nodes}'"
  ((nodes <= 99)) || die "at most 99 nodes"
  [[ $(id -u) == 0 ]] || die "must run as root"
  if have_tools && ours && alive "$CTLD_PID" slurmctld && [[ $(node_count || echo 0) == "$nodes" ]]; then
    if all_idle; then
      summary "already up"
      return 0
    fi
    if all_healthy; then
      summary "already up, running jobs" # restarting would lose them
      return 0
    fi
    log "cluster is up but some nodes are neither idle nor busy: restarting it"
  fi
  install_packages
  # a cluster of this script with another node count, or half started: stop it first
  # (/run/slurm-local is this script's alone, so its pid files are daemons it started)
  slurm_pidfiles | stop_pidfiles
  install -d -m 0755 "$SPOOL" "${SPOOL}/ctld" "${SPOOL}/d" "$LOGDIR" "$RUNDIR"
  for k in $(seq "$nodes"); do install -d -m 0755 "${SPOOL}/d/n${k}"; done
  start_munge
  write_conf "$nodes"
  rm -f "${RUNDIR}"/slurmd-*.pid
  log "starting slurmctld -c and ${nodes} slurmd"
  timeout 30 slurmctld -c </dev/null >>"${LOGDIR}/slurmctld.stdout" 2>&1 ||
    die "slurmctld failed to start: $(tail -n 5 "${LOGDIR}/slurmctld.log" 2>/dev/null)"
  for k in $(seq "$nodes"); do
    timeout 30 slurmd -N "n${k}" </dev/null >>"${LOGDIR}/slurmd-n${k}.stdout" 2>&1 ||
      die "slurmd -N n${k} failed to start: $(tail -n 5 "${LOGDIR}/slurmd-n${k}.log" 2>/dev/null)"
  done
  local deadline=$((SECONDS + IDLE_WAIT))
  until all_idle && [[ $(node_count) == "$nodes" ]]; do
    if ((SECONDS >= deadline)); then
      timeout 10 sinfo -N -l >&2 || true
      die "nodes not idle after ${IDLE_WAIT}s (logs in ${LOGDIR})"
    fi
    sleep 0.2
  done
  summary "started in $((SECONDS - started))s"
}

# --- down -------------------------------------------------------------------------------
cmd_down() {
  local jobs deadline
  if alive "$CTLD_PID" slurmctld; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      log "cancelling jobs: $(tr '\n' ' ' <<<"$jobs")"
      # shellcheck disable=SC2086 # one job id per word
      timeout 20 scancel $jobs || true
      deadline=$((SECONDS + 20))
      while [[ -n $(timeout 10 squeue -h -t PD,R,CG,CF,S -o %i 2>/dev/null || true) ]]; do
        ((SECONDS < deadline)) || break
        sleep 0.5
      done
    fi
  fi
  slurm_pidfiles | stop_pidfiles
  # munged last (slurm daemons talk to it while stopping), and only if `up` started it
  if [[ -e $MUNGED_PID ]]; then
    echo "${MUNGED_PID} munged" | stop_pidfiles
    rm -f "$MUNGED_PID"
  fi
  echo "slurm cluster down"
}

# --- status -----------------------------------------------------------------------------
cmd_status() {
  if have_tools && alive "$CTLD_PID" slurmctld && timeout 10 sinfo -N 2>/dev/null; then
    return 0
  fi
  echo "down"
  return 3
}

case "${1:-}" in
up)
  shift
  cmd_up "$@"
  ;;
down) cmd_down ;;
status) cmd_status ;;
*)
  echo "usage: $0 up [NODES] | down | status" >&2
  exit 2
  ;;
esac
