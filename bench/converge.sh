#!/usr/bin/env bash
# Converge benchmark: berth vs Docker Compose v2 vs plain `docker run`, on one generated 20-service
# compose file, plus the agent's idle memory and how fast it repairs a container removed by hand. Prints
# a stable, parseable table on stdout (format in bench/README.md); progress and the individual samples go
# to stderr. Exit 0: every target met; 1: a target missed; anything else: the
# benchmark itself failed (no `result` line then).
#
#   bench/converge.sh                RUNS=5 repetitions (median reported)
#   RUNS=9 SERVICES=20 bench/converge.sh
#
# Needs root (or access to the Docker engine) on a machine like CI's; installs what is missing the way
# scripts/test.sh does, Compose v2 with scripts/compose-v2.sh, and uses the release build of berth.
# Everything it creates carries its own agent ids / project name / label (suffix = this shell's pid) and
# is removed on exit, also on failure or Ctrl-C. Nothing else on the engine is touched.
set -eu
set -o pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

RUNS="${RUNS:-5}"
SERVICES="${SERVICES:-20}"
IDLE_SECS="${IDLE_SECS:-5}"
# Targets (see bench/README.md).
TARGET_FRESH_RATIO="1.00"   # berth_ms / compose_ms at most this
TARGET_NOOP_SPEEDUP="5.0"   # compose_ms / berth_ms at least this
TARGET_IDLE_RSS_KIB=30720   # below 30 MiB
TARGET_DRIFT_MS=1000        # drift repair at most this
TARGET_ALERTS_RATIO="1.25"  # no-op cycle with a hanging alert receiver / without, at most this

case "$RUNS" in '' | *[!0-9]* | 0) echo "RUNS must be a positive integer" >&2; exit 2 ;; esac
case "$SERVICES" in '' | *[!0-9]* | 0) echo "SERVICES must be a positive integer" >&2; exit 2 ;; esac

TAG="$$"
BERTH_ID="bench-apply-$TAG"      # agent id of `berth apply`
AGENT_ID="bench-agent-$TAG"      # agent id of the idle `berth agent`
STACK="bench-b$TAG"              # berth's stack (named after the directory)
PROJECT="bench-c$TAG"            # Compose project
RUN_LABEL="io.berth.bench=run-$TAG"   # the plain docker run objects
RUN_PREFIX="bench-r$TAG"
IMAGE="$BERTH_TEST_IMAGE"

WORK="$(mktemp -d /tmp/berth-bench.XXXXXX)"
AGENT_PID=""
HANG_PID=""

cleanup_labelled() { # LABEL: remove containers, then networks and volumes carrying it
    local ids
    ids="$(docker ps -aq --filter "label=$1")"
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    ids="$(docker network ls -q --filter "label=$1")"
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker network rm $ids >/dev/null 2>&1 || true
    ids="$(docker volume ls -q --filter "label=$1")"
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker volume rm $ids >/dev/null 2>&1 || true
}

teardown_berth() { cleanup_labelled "io.berth.agent=$BERTH_ID"; }
teardown_compose() { cleanup_labelled "com.docker.compose.project=$PROJECT"; }
teardown_run() { cleanup_labelled "$RUN_LABEL"; }
teardown_agent() { cleanup_labelled "io.berth.agent=$AGENT_ID"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill -TERM "$AGENT_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
    fi
    if [ -n "$HANG_PID" ]; then kill "$HANG_PID" 2>/dev/null || true; wait "$HANG_PID" 2>/dev/null || true; fi
    if docker info >/dev/null 2>&1; then
        teardown_berth; teardown_compose; teardown_run; teardown_agent
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- setup -----------------------------------------------------------------------------------------------

ensure_packages git:git gcc:gcc /usr/include/stdio.h:libc6-dev pkg-config:pkg-config \
    /usr/include/openssl/ssl.h:libssl-dev
ensure_cargo
ensure_dockerd
ensure_test_image
COMPOSE="$(scripts/compose-v2.sh --print)"
if [ "$COMPOSE" = "docker compose" ]; then
    COMPOSE_VERSION="v$(docker compose version --short)"
else
    COMPOSE_VERSION="v1-$(docker-compose version --short)"
    log "WARNING: Compose v2 unavailable; comparing against $COMPOSE_VERSION instead"
fi
compose() { $COMPOSE "$@"; }

log "building berth (cargo build --release)"
cargo build --release --locked >&2
BERTH="${CARGO_TARGET_DIR:-$ROOT/target}/release/berth"
BERTH_VERSION="$("$BERTH" --version | awk '{print $2}')"

# The compose file: SERVICES services on one network, two named volumes; odd ones sleep, even ones serve
# HTTP. Every container runs and stays running.
gen_compose() {
    local i name
    echo "services:"
    for i in $(seq 1 "$SERVICES"); do
        name="$(printf 's%02d' "$i")"
        echo "  $name:"
        echo "    image: $IMAGE"
        if [ $((i % 2)) -eq 1 ]; then
            echo '    command: ["sleep", "3600"]'
        else
            echo '    command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]'
        fi
        echo "    networks: [net]"
        case "$i" in
            1 | 2) echo "    volumes: [\"data:/data\"]" ;;
            3) echo "    volumes: [\"cache:/cache\"]" ;;
        esac
    done
    echo "networks:"
    echo "  net: {}"
    echo "volumes:"
    echo "  data: {}"
    echo "  cache: {}"
}
APP="$WORK/$STACK"
mkdir -p "$APP"
gen_compose >"$APP/compose.yaml"

if ! "$BERTH" render "$APP" >"$WORK/render.out" 2>&1; then
    log "berth render failed on the generated file:"; cat "$WORK/render.out" >&2
    exit 3
fi
# shellcheck disable=SC2126
if [ "$(grep -c "^  $STACK-s[0-9]*-1 " "$WORK/render.out" || true)" -ne "$SERVICES" ]; then
    log "berth render did not give $SERVICES containers:"; cat "$WORK/render.out" >&2
    exit 3
fi

# --- timing helpers --------------------------------------------------------------------------------------

now_us() { local t="${EPOCHREALTIME/[.,]/}"; echo "$t"; }

# running LABEL: number of running containers carrying LABEL
running() { docker ps -q --filter "label=$1" --filter status=running | wc -l; }

# Wait (after the timed command returned) until all SERVICES containers with LABEL run. Prints the
# microsecond time at which they were seen all running, or T_END if they already were: the check itself
# is not counted when the command already finished the job.
settle() { # LABEL T_END
    local label="$1" t="$2" i=0
    if [ "$(running "$label")" -eq "$SERVICES" ]; then echo "$t"; return 0; fi
    while [ "$(running "$label")" -ne "$SERVICES" ]; do
        i=$((i + 1))
        if [ "$i" -gt 600 ]; then log "containers with $label did not all start"; return 1; fi
        sleep 0.05
    done
    now_us
}

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) / 1000 + 0.5 }'; }

median() { # numbers on stdin
    sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 + 0.5 }'
}

ids_of() { docker ps -aq --no-trunc --filter "label=$1" | sort | tr '\n' ' '; }

fresh_berth() {
    local t0 t1
    t0="$(now_us)"
    "$BERTH" apply "$APP" --agent-id "$BERTH_ID" >"$WORK/apply.out" 2>&1 || {
        cat "$WORK/apply.out" >&2; return 1; }
    t1="$(settle "io.berth.agent=$BERTH_ID" "$(now_us)")"
    ms "$t0" "$t1"
}

noop_berth() {
    local t0 t1 before
    before="$(ids_of "io.berth.agent=$BERTH_ID")"
    t0="$(now_us)"
    "$BERTH" apply "$APP" --agent-id "$BERTH_ID" >"$WORK/apply.out" 2>&1 || {
        cat "$WORK/apply.out" >&2; return 1; }
    t1="$(now_us)"
    if [ "$(ids_of "io.berth.agent=$BERTH_ID")" != "$before" ]; then
        log "berth apply of the unchanged file changed containers:"; cat "$WORK/apply.out" >&2; return 1
    fi
    ms "$t0" "$t1"
}

fresh_compose() {
    local t0 t1
    t0="$(now_us)"
    compose -p "$PROJECT" -f "$APP/compose.yaml" up -d >"$WORK/compose.out" 2>&1 || {
        cat "$WORK/compose.out" >&2; return 1; }
    t1="$(settle "com.docker.compose.project=$PROJECT" "$(now_us)")"
    ms "$t0" "$t1"
}

noop_compose() {
    local t0 t1 before
    before="$(ids_of "com.docker.compose.project=$PROJECT")"
    t0="$(now_us)"
    compose -p "$PROJECT" -f "$APP/compose.yaml" up -d >"$WORK/compose.out" 2>&1 || {
        cat "$WORK/compose.out" >&2; return 1; }
    t1="$(now_us)"
    if [ "$(ids_of "com.docker.compose.project=$PROJECT")" != "$before" ]; then
        log "compose up of the unchanged file changed containers"; return 1
    fi
    ms "$t0" "$t1"
}

# The same containers by hand: the network and volumes, then SERVICES `docker run -d` in parallel.
fresh_run() {
    local t0 t1 i name pids="" fail=0 p
    t0="$(now_us)"
    docker network create --label "$RUN_LABEL" "${RUN_PREFIX}_net" >/dev/null &
    pids="$pids $!"
    docker volume create --label "$RUN_LABEL" "${RUN_PREFIX}_data" >/dev/null &
    pids="$pids $!"
    docker volume create --label "$RUN_LABEL" "${RUN_PREFIX}_cache" >/dev/null &
    pids="$pids $!"
    for p in $pids; do wait "$p" || fail=1; done
    [ "$fail" -eq 0 ] || return 1
    pids=""
    for i in $(seq 1 "$SERVICES"); do
        name="$(printf 's%02d' "$i")"
        set -- docker run -d --name "$RUN_PREFIX-$name-1" --label "$RUN_LABEL" \
            --network "${RUN_PREFIX}_net" --network-alias "$name"
        case "$i" in
            1 | 2) set -- "$@" -v "${RUN_PREFIX}_data:/data" ;;
            3) set -- "$@" -v "${RUN_PREFIX}_cache:/cache" ;;
        esac
        if [ $((i % 2)) -eq 1 ]; then
            set -- "$@" "$IMAGE" sleep 3600
        else
            set -- "$@" "$IMAGE" httpd -f -p 8080 -h /var/www
        fi
        "$@" >/dev/null &
        pids="$pids $!"
    done
    for p in $pids; do wait "$p" || fail=1; done
    [ "$fail" -eq 0 ] || return 1
    t1="$(settle "$RUN_LABEL" "$(now_us)")"
    ms "$t0" "$t1"
}

# --- (a) fresh converge and (b) no-op -------------------------------------------------------------------

log "bench: $SERVICES services, $RUNS runs, berth $BERTH_VERSION (release), compose $COMPOSE_VERSION"
teardown_berth; teardown_compose; teardown_run
FB=""; FC=""; FR=""; NB=""; NC=""
for run in $(seq 1 "$RUNS"); do
    # Alternate who goes first so caches and engine state favour no one.
    if [ $((run % 2)) -eq 1 ]; then order="berth compose run"; else order="run compose berth"; fi
    for who in $order; do
        case "$who" in
            berth)
                f="$(fresh_berth)"; n="$(noop_berth)"; teardown_berth
                FB="$FB $f"; NB="$NB $n"
                log "run $run: berth   fresh ${f}ms  noop ${n}ms" ;;
            compose)
                f="$(fresh_compose)"; n="$(noop_compose)"; teardown_compose
                FC="$FC $f"; NC="$NC $n"
                log "run $run: compose fresh ${f}ms  noop ${n}ms" ;;
            run)
                f="$(fresh_run)"; teardown_run
                FR="$FR $f"
                log "run $run: docker  fresh ${f}ms" ;;
        esac
    done
done
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
fresh_berth_ms="$(med "$FB")"; fresh_compose_ms="$(med "$FC")"; fresh_run_ms="$(med "$FR")"
noop_berth_ms="$(med "$NB")"; noop_compose_ms="$(med "$NC")"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) b = 1; printf "%.2f", a / b }'; }
fresh_ratio="$(ratio "$fresh_berth_ms" "$fresh_compose_ms")"
noop_speedup="$(ratio "$noop_compose_ms" "$noop_berth_ms")"

# --- (c) idle RSS of the agent with the SERVICES containers converged -----------------------------------

log "idle RSS: berth agent on a local Git repository"
git init -q --bare "$WORK/fleet.git"
git --git-dir="$WORK/fleet.git" symbolic-ref HEAD refs/heads/main
git init -q "$WORK/fleet"
mkdir -p "$WORK/fleet/bench"
cp "$APP/compose.yaml" "$WORK/fleet/bench/compose.yaml"
git -C "$WORK/fleet" checkout -q -b main
git -C "$WORK/fleet" add -A
git -C "$WORK/fleet" -c user.name=bench -c user.email=bench@berth.invalid commit -q -m "bench: $SERVICES services"
git -C "$WORK/fleet" push -q "$WORK/fleet.git" main
cat >"$WORK/agent.yaml" <<EOF
agent_id: $AGENT_ID
source:
  url: $WORK/fleet.git
  branch: main
  path: bench
  interval: 1m
state_dir: $WORK/state
socket: $WORK/berth.sock
EOF
"$BERTH" agent --config "$WORK/agent.yaml" </dev/null >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
i=0
until "$BERTH" status --json --socket "$WORK/berth.sock" 2>/dev/null | tr -d ' \n' \
        | grep -q '"applied_commit":"[0-9a-f]\{40\}".*"outcome":"applied".*"cycles":[1-9]'; do
    i=$((i + 1))
    if ! kill -0 "$AGENT_PID" 2>/dev/null || [ "$i" -gt 1200 ]; then
        log "the agent did not apply the repository; its log:"; tail -n 30 "$WORK/agent.log" >&2
        exit 3
    fi
    sleep 0.1
done
[ "$(settle "io.berth.agent=$AGENT_ID" 0)" ] || exit 3
# Idle: no trigger for a minute. Sample VmRSS once a second after a few quiet seconds; report the highest.
sleep "$IDLE_SECS"
idle_rss_kib=0
for _ in 1 2 3 4 5; do
    r="$(awk '/^VmRSS:/ { print $2 }' "/proc/$AGENT_PID/status")"
    [ "$r" -gt "$idle_rss_kib" ] && idle_rss_kib="$r"
    sleep 1
done
# The kernel updates VmHWM lazily: never report a peak below a sample.
peak_rss_kib="$(awk '/^VmHWM:/ { print $2 }' "/proc/$AGENT_PID/status")"
[ "$peak_rss_kib" -ge "$idle_rss_kib" ] || peak_rss_kib="$idle_rss_kib"

# --- (d) drift repair: `docker rm -f` of one managed container until it runs again ------------------------

# Whole cycles the agent has run (from `berth status --json`).
agent_cycles() {
    "$BERTH" status --json --socket "$WORK/berth.sock" 2>/dev/null | tr -d ' \n' \
        | sed -n 's/.*"cycles":\([0-9]*\).*/\1/p'
}

# drift_repair NAME: ms from `docker rm -f NAME` until a new container of that name runs (polled with
# `docker inspect`, which also counts the engine's own latency).
drift_repair() {
    local name="$1" old t0 t1 i=0 now
    old="$(docker inspect --format '{{.Id}}' "$name")"
    t0="$(now_us)"
    docker rm -f "$name" >/dev/null
    while :; do
        now="$(docker inspect --format '{{.Id}} {{.State.Running}}' "$name" 2>/dev/null || true)"
        case "$now" in "$old "*) ;; *" true") break ;; esac
        i=$((i + 1))
        if [ "$i" -gt 1500 ]; then log "$name was not repaired by the drift watcher"; return 1; fi
        sleep 0.02
    done
    t1="$(now_us)"
    ms "$t0" "$t1"
}

log "drift repair: docker rm -f of one of $SERVICES managed containers"
DR=""
for run in $(seq 1 "$RUNS"); do
    # Quiet first: every container running and the last drift window long closed (not timed).
    [ "$(settle "io.berth.agent=$AGENT_ID" 0)" ] || exit 3
    sleep 1
    name="bench-$(printf 's%02d' $(((run - 1) % SERVICES + 1)))-1"
    c0="$(agent_cycles)"
    d="$(drift_repair "$name")" || { tail -n 30 "$WORK/agent.log" >&2; exit 3; }
    DR="$DR $d"
    sleep 1
    c1="$(agent_cycles)"
    log "run $run: drift repair of $name ${d}ms (agent cycles +$((${c1:-0} - ${c0:-0})))"
done
drift_ms="$(med "$DR")"
if grep -q "apply step failed" "$WORK/agent.log"; then
    log "WARNING: the agent logged failed apply steps during the drift runs:"
    grep "apply step failed" "$WORK/agent.log" | tail -n 5 >&2
fi

# --- (e) a no-op cycle, without and with an alert receiver that never answers ---------------------------

# noop_cycles: median ms of RUNS `berth reconcile --wait` against the idle agent (nothing to change).
noop_cycles() {
    local t0 t1 all="" run
    for run in $(seq 1 "$RUNS"); do
        t0="$(now_us)"
        "$BERTH" reconcile --wait --socket "$WORK/berth.sock" >"$WORK/reconcile.out" 2>&1 || {
            cat "$WORK/reconcile.out" >&2; return 1; }
        t1="$(now_us)"
        all="$all $(ms "$t0" "$t1")"
    done
    med "$all"
}

start_agent() {
    "$BERTH" agent --config "$WORK/agent.yaml" </dev/null >>"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    local i=0
    until "$BERTH" status --json --socket "$WORK/berth.sock" 2>/dev/null | tr -d ' \n' \
            | grep -q '"outcome":"applied".*"cycles":[1-9]'; do
        i=$((i + 1))
        if ! kill -0 "$AGENT_PID" 2>/dev/null || [ "$i" -gt 1200 ]; then
            log "the agent did not start again; its log:"; tail -n 30 "$WORK/agent.log" >&2
            return 1
        fi
        sleep 0.1
    done
}

log "no-op cycles without alerts"
alerts_off_ms="$(noop_cycles)" || exit 3
# A receiver that accepts connections (the kernel's backlog) and never answers a request.
python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(128)
print(s.getsockname()[1], flush=True); time.sleep(86400)' >"$WORK/hang.port" &
HANG_PID=$!
for _ in $(seq 50); do [ -s "$WORK/hang.port" ] && break; sleep 0.1; done
HANG_PORT="$(cat "$WORK/hang.port")"
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true
cat >>"$WORK/agent.yaml" <<EOF
alerts:
  - name: hang
    type: generic
    url: http://127.0.0.1:$HANG_PORT/never
    min_severity: info
EOF
start_agent || exit 3
log "no-op cycles with an alert receiver that never answers (port $HANG_PORT)"
alerts_on_ms="$(noop_cycles)" || exit 3
outbox="$("$BERTH" status --json --socket "$WORK/berth.sock" | tr -d ' \n' | sed -n 's/.*"alerts_outbox":\([0-9]*\).*/\1/p')"
log "alerts outbox while the receiver hangs: ${outbox:-?} events waiting"
# Whole milliseconds: a cycle under 1 ms counts as 1 so the ratio stays defined.
alerts_ratio="$(ratio "$(( alerts_on_ms > 0 ? alerts_on_ms : 1 ))" "$(( alerts_off_ms > 0 ? alerts_off_ms : 1 ))")"

# --- the table ------------------------------------------------------------------------------------------

verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }
v_fresh="$(verdict "$fresh_ratio <= $TARGET_FRESH_RATIO")"
v_noop="$(verdict "$noop_speedup >= $TARGET_NOOP_SPEEDUP")"
v_idle="$(verdict "$idle_rss_kib < $TARGET_IDLE_RSS_KIB")"
v_drift="$(verdict "$drift_ms <= $TARGET_DRIFT_MS")"
v_alerts="$(verdict "$alerts_ratio <= $TARGET_ALERTS_RATIO")"
result=PASS
for v in "$v_fresh" "$v_noop" "$v_idle" "$v_drift" "$v_alerts"; do [ "$v" = PASS ] || result=FAIL; done

echo "bench  services=$SERVICES  runs=$RUNS  berth=$BERTH_VERSION  compose=$COMPOSE_VERSION  docker=$(docker version --format '{{.Server.Version}}')"
echo "fresh  berth_ms=$fresh_berth_ms  compose_ms=$fresh_compose_ms  docker_run_ms=$fresh_run_ms  berth/compose=${fresh_ratio}x"
echo "noop  berth_ms=$noop_berth_ms  compose_ms=$noop_compose_ms  docker_run_ms=n/a  compose/berth=${noop_speedup}x"
echo "idle_rss_kib=$idle_rss_kib  peak_rss_kib=$peak_rss_kib"
echo "drift  berth_ms=$drift_ms"
echo "alerts  noop_cycle_ms=$alerts_off_ms  hanging_receiver_ms=$alerts_on_ms  with/without=${alerts_ratio}x"
echo "target  fresh  berth/compose<=${TARGET_FRESH_RATIO}x  $v_fresh"
echo "target  noop  compose/berth>=${TARGET_NOOP_SPEEDUP}x  $v_noop"
echo "target  idle  idle_rss_kib<$TARGET_IDLE_RSS_KIB  $v_idle"
echo "target  drift  berth_ms<=$TARGET_DRIFT_MS  $v_drift"
echo "target  alerts  with/without<=${TARGET_ALERTS_RATIO}x  $v_alerts"
echo "result  $result"
[ "$result" = PASS ]
