#!/bin/sh
# berth demo: an agent following hosts/edge-01 of a local Git repository made from config-examples/fleet.
#
#   scripts/demo.sh                 start (or show) the demo agent and print its status
#   scripts/demo.sh stop            stop the agent, remove its containers and networks (volumes are kept)
#   scripts/demo.sh stop --purge    also remove its volumes and /tmp/berth-demo (repository, state, log)
#
# On a fresh Debian machine, as root: installs what is missing (apt-get), starts dockerd if none runs,
# builds berth (cargo build --release) and the local test image, then runs the agent in the background.
# Idempotent: running it again reuses the repository (and any commits pushed to it) and a running agent.
# It only ever touches Docker objects labelled io.berth.agent=demo.
set -eu
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

DEMO=/tmp/berth-demo
AGENT_ID=demo
REPO="$DEMO/fleet.git"          # the "remote": a bare repository
CLONE="$DEMO/fleet"             # a clone to edit and push from
CONFIG="$DEMO/config.yaml"
SOCKET="$DEMO/berth.sock"
STATE="$DEMO/state"
LOG="$DEMO/agent.log"
PIDFILE="$DEMO/agent.pid"
BERTH="${CARGO_TARGET_DIR:-$ROOT/target}/release/berth"
WAIT_SECS="${BERTH_DEMO_WAIT:-180}"

usage() {
    echo "usage: $0 [start] | stop [--purge]" >&2
    exit 2
}

# The pid of the running demo agent, or nothing. Checks that the pid is really ours.
agent_pid() {
    [ -f "$PIDFILE" ] || return 0
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 0
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "berth agent --config $CONFIG"; then
        echo "$pid"
    fi
}

# Run git with an identity, so commits work on a machine with no git config.
demo_git() {
    git -c user.name="berth demo" -c user.email="demo@berth.invalid" -c init.defaultBranch=main "$@"
}

status_json() { "$BERTH" status --json --socket "$SOCKET" 2>/dev/null; }

# Prints the applied commit (40 hex) once this agent process has finished a cycle and runs a revision;
# nothing before. (Right after a restart the status already names the revision stored by the last run.)
applied_commit() {
    s="$(status_json | tr -d ' \n')"
    cycles="$(printf '%s' "$s" | sed -n 's/.*"cycles":\([0-9]*\).*/\1/p')"
    [ "${cycles:-0}" -ge 1 ] || return 0
    printf '%s' "$s" | sed -n 's/.*"applied_commit":"\([0-9a-f]\{40\}\)".*/\1/p'
}

stop() {
    purge=0
    for a in "$@"; do
        case "$a" in
            --purge) purge=1 ;;
            *) usage ;;
        esac
    done
    pid="$(agent_pid)"
    if [ -n "$pid" ]; then
        log "stopping the demo agent (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null; do
            i=$((i + 1))
            if [ "$i" -gt 300 ]; then
                log "agent $pid still running after 30s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    fi
    rm -f "$PIDFILE"
    if docker info >/dev/null 2>&1; then
        label="label=io.berth.agent=$AGENT_ID"
        ids="$(docker ps -aq --filter "$label")"
        if [ -n "$ids" ]; then
            log "removing containers of agent $AGENT_ID"
            # shellcheck disable=SC2086 # one id per word
            docker rm -f $ids >/dev/null
        fi
        ids="$(docker network ls -q --filter "$label")"
        if [ -n "$ids" ]; then
            log "removing networks of agent $AGENT_ID"
            # shellcheck disable=SC2086
            docker network rm $ids >/dev/null
        fi
        ids="$(docker volume ls -q --filter "$label")"
        if [ -n "$ids" ]; then
            if [ "$purge" -eq 1 ]; then
                log "removing volumes of agent $AGENT_ID"
                # shellcheck disable=SC2086
                docker volume rm $ids >/dev/null
            else
                log "kept volumes (scripts/demo.sh stop --purge removes them): $(printf '%s' "$ids" | tr '\n' ' ')"
            fi
        fi
    else
        log "no Docker engine answers: nothing to remove"
    fi
    if [ "$purge" -eq 1 ]; then
        log "removing $DEMO"
        rm -rf "$DEMO"
    fi
    log "demo stopped"
}

make_repo() {
    if [ -d "$REPO" ] && git --git-dir="$REPO" rev-parse --verify -q refs/heads/main >/dev/null; then
        log "reusing $REPO (branch main at $(git --git-dir="$REPO" rev-parse --short refs/heads/main))"
    else
        log "creating $REPO from config-examples/fleet"
        rm -rf "$REPO" "$CLONE"
        demo_git init -q --bare "$REPO"
        git --git-dir="$REPO" symbolic-ref HEAD refs/heads/main
        work="$(mktemp -d)"
        demo_git init -q "$work"
        # cp -R keeps dotfiles (worker/.env).
        cp -R "$ROOT/config-examples/fleet/." "$work/"
        demo_git -C "$work" checkout -q -b main
        demo_git -C "$work" add -A
        demo_git -C "$work" commit -q -m "Initial fleet from config-examples/fleet"
        demo_git -C "$work" push -q "$REPO" main
        rm -rf "$work"
    fi
    if [ ! -d "$CLONE/.git" ]; then
        demo_git clone -q "$REPO" "$CLONE"
        git -C "$CLONE" config user.name "berth demo"
        git -C "$CLONE" config user.email "demo@berth.invalid"
    fi
}

write_config() {
    cat >"$CONFIG.new" <<EOF
# Written by scripts/demo.sh (see config-examples/config.yaml for every key).
agent_id: $AGENT_ID
source:
  url: $REPO
  branch: main
  path: hosts/edge-01
  interval: 10s
  timeout: 10s
facts:
  site: lyon          # \${BERTH_FACT_SITE} of the shared base hosts/edge-01/sensor includes
state_dir: $STATE
socket: $SOCKET
log:
  format: plain
  level: info
EOF
    mv -f "$CONFIG.new" "$CONFIG"
}

start() {
    [ "$#" -eq 0 ] || usage
    ensure_packages git:git gcc:gcc /usr/include/stdio.h:libc6-dev pkg-config:pkg-config \
        /usr/include/openssl/ssl.h:libssl-dev setsid:util-linux
    ensure_cargo
    ensure_dockerd
    ensure_test_image

    log "building berth (cargo build --release)"
    cargo build --release --locked

    mkdir -p "$DEMO"
    make_repo
    write_config

    pid="$(agent_pid)"
    if [ -n "$pid" ]; then
        log "the demo agent is already running (pid $pid)"
    else
        rm -f "$PIDFILE"
        log "starting berth agent (log: $LOG)"
        # setsid: the agent outlives this shell and its terminal.
        setsid "$BERTH" agent --config "$CONFIG" </dev/null >>"$LOG" 2>&1 &
        echo $! >"$PIDFILE"
    fi

    log "waiting for the first applied revision (up to ${WAIT_SECS}s)"
    i=0
    until [ -n "$(applied_commit)" ]; do
        if [ -z "$(agent_pid)" ]; then
            log "the agent exited; the end of $LOG:"
            tail -n 30 "$LOG" >&2
            exit 1
        fi
        i=$((i + 1))
        if [ "$i" -gt $((WAIT_SECS * 5)) ]; then
            log "no revision applied after ${WAIT_SECS}s; status and the end of $LOG:"
            "$BERTH" status --socket "$SOCKET" >&2 || true
            tail -n 30 "$LOG" >&2
            exit 1
        fi
        sleep 0.2
    done

    echo
    "$BERTH" status --socket "$SOCKET"
    cat <<EOF

The demo agent (agent_id $AGENT_ID) follows hosts/edge-01 of $REPO every 10s.

  Look:      $BERTH status --config $CONFIG
             $BERTH history --config $CONFIG
             busybox wget -q -O - http://127.0.0.1:18080/
  Change:    cd $CLONE
             sed -i 's/Hello/Hello again/' hosts/edge-01/web/html/index.html
             git commit -qam "Say hello again" && git push -q
             $BERTH reconcile --wait --config $CONFIG    # or wait up to 10s
  Roll back: $BERTH rollback --config $CONFIG            # then: $BERTH resume --config $CONFIG
  Log:       tail -f $LOG
  Stop:      scripts/demo.sh stop          (add --purge to drop volumes and $DEMO)
EOF
}

case "${1:-start}" in
    start) [ "$#" -gt 0 ] && shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) usage ;;
esac
