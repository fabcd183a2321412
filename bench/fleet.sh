#!/usr/bin/env bash
# Fleet benchmark: checking a fleet repository in CI. On a generated repository of BOXES boxes (three
# shared bases, each box includes one of them with its own .env), times
#   render_all   `berth render --repo ROOT --all` against the reference a fleet CI runs without berth:
#                `docker compose config -q` in each box's directory (timed on SAMPLE boxes, scaled to BOXES)
#   fleet_diff   `berth fleet-diff --repo ROOT HEAD~1 HEAD` after one base changed (no reference: nothing
#                else says per box what would change); its answer is checked (the boxes of that base)
# and prints a stable, parseable table on stdout (format in bench/README.md); progress and samples go to
# stderr. Exit 0: every target met; 1: a target missed; anything else: the benchmark itself failed (no
# `result` line then).
#
#   bench/fleet.sh                         RUNS=5 BOXES=500 SAMPLE=50
#   RUNS=9 bench/fleet.sh 2>/dev/null      only the table
#   BERTH=target/debug/berth bench/fleet.sh   an existing binary instead of the release build
#
# Needs no Docker engine for berth; the reference needs the Docker CLI with Compose v2 (installed with
# scripts/compose-v2.sh as bench/converge.sh does). Works in a temporary directory, removed on exit.
set -eu
set -o pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

RUNS="${RUNS:-5}"
BOXES="${BOXES:-500}"
SAMPLE="${SAMPLE:-50}"
# Targets (see bench/README.md).
TARGET_RENDER_RATIO="1.00"   # berth_ms / reference_ms at most this
TARGET_DIFF_MS=10000         # fleet-diff of BOXES boxes at most this

for v in RUNS BOXES SAMPLE; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "$v must be a positive integer" >&2; exit 2 ;; esac
done
[ "$SAMPLE" -le "$BOXES" ] || SAMPLE="$BOXES"

WORK="$(mktemp -d /tmp/berth-fleet-bench.XXXXXX)"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- setup -----------------------------------------------------------------------------------------------

if [ -z "${BERTH:-}" ]; then
    ensure_packages git:git gcc:gcc /usr/include/stdio.h:libc6-dev pkg-config:pkg-config \
        /usr/include/openssl/ssl.h:libssl-dev
    ensure_cargo
    log "building berth (cargo build --release)"
    cargo build --release --locked >&2
    BERTH="${CARGO_TARGET_DIR:-$ROOT/target}/release/berth"
fi
BERTH_VERSION="$("$BERTH" --version | awk '{print $2}')"
COMPOSE="$(scripts/compose-v2.sh --print)"
if [ "$COMPOSE" = "docker compose" ]; then
    COMPOSE_VERSION="v$(docker compose version --short)"
else
    COMPOSE_VERSION="v1-$(docker-compose version --short)"
    log "WARNING: Compose v2 unavailable; comparing against $COMPOSE_VERSION instead"
fi

# The repository: bases/base-{0,1,2}, hosts/box-NNN including base (NNN % 3) with its own .env.
REPO="$WORK/fleet"
base() { # LEVEL
    cat <<EOF
services:
  app:
    image: berth-test/busybox:latest
    command: ["sleep", "3600"]
    environment:
      LEVEL: $1
      SITE: \${BERTH_FACT_SITE:-none}
      BUS: \${BUS}
    volumes: ["data:/data"]
    init: true
    restart: unless-stopped
volumes:
  data: {}
EOF
}
gen_repo() {
    local i b
    mkdir -p "$REPO"
    for b in 0 1 2; do
        mkdir -p "$REPO/bases/base-$b"
        base info >"$REPO/bases/base-$b/compose.yaml"
    done
    for i in $(seq 0 $((BOXES - 1))); do
        b="$REPO/hosts/$(printf 'box-%03d' "$i")"
        mkdir -p "$b"
        printf 'include:\n  - path: ../../bases/base-%d/compose.yaml\n' $((i % 3)) >"$b/compose.yaml"
        printf 'BUS=i2c-%d\n' "$i" >"$b/.env"
    done
    git -C "$REPO" -c init.defaultBranch=main init -q
    git -C "$REPO" add -A
    git -C "$REPO" -c user.name=bench -c user.email=bench@berth.invalid commit -q -m fleet
    base debug >"$REPO/bases/base-1/compose.yaml"
    git -C "$REPO" -c user.name=bench -c user.email=bench@berth.invalid commit -q -am "base-1: debug"
}
log "generating $BOXES boxes in $REPO"
gen_repo
# Boxes that include base-1.
WANT_CHANGED=$(( (BOXES + 1) / 3 ))

# --- timing helpers --------------------------------------------------------------------------------------

now_us() { local t="${EPOCHREALTIME/[.,]/}"; echo "$t"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) / 1000 + 0.5 }'; }
median() { # numbers on stdin
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 + 0.5 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) b = 1; printf "%.2f", a / b }'; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }

# Sample boxes for the reference: spread over the fleet.
sample_boxes() {
    local k
    for k in $(seq 0 $((SAMPLE - 1))); do printf 'box-%03d\n' $(( k * BOXES / SAMPLE )); done
}

render_berth() {
    local t0 t1
    t0="$(now_us)"
    "$BERTH" render --repo "$REPO" --all >"$WORK/render.out" 2>&1 || {
        log "berth render --repo --all failed:"; tail -20 "$WORK/render.out" >&2; return 1; }
    t1="$(now_us)"
    grep -q "^$BOXES of $BOXES box(es) ok" "$WORK/render.out" || {
        log "berth render --repo --all did not render every box:"; tail -5 "$WORK/render.out" >&2; return 1; }
    ms "$t0" "$t1"
}

# The reference on SAMPLE boxes, scaled to BOXES.
render_reference() {
    local t0 t1 b
    t0="$(now_us)"
    for b in $(sample_boxes); do
        (cd "$REPO/hosts/$b" && $COMPOSE config -q) >"$WORK/compose.out" 2>&1 || {
            log "compose config failed in $b:"; cat "$WORK/compose.out" >&2; return 1; }
    done
    t1="$(now_us)"
    awk -v a="$t0" -v b="$t1" -v n="$BOXES" -v s="$SAMPLE" 'BEGIN { printf "%d", (b - a) / 1000 * n / s + 0.5 }'
}

fleet_diff() {
    local t0 t1 rc=0
    t0="$(now_us)"
    "$BERTH" fleet-diff --repo "$REPO" HEAD~1 HEAD >"$WORK/diff.out" 2>"$WORK/diff.err" || rc=$?
    t1="$(now_us)"
    if [ "$rc" -ne 2 ]; then
        log "berth fleet-diff exited $rc, not 2:"; tail -20 "$WORK/diff.out" "$WORK/diff.err" >&2; return 1
    fi
    if ! grep -qx "$WANT_CHANGED of $BOXES boxes change" "$WORK/diff.out"; then
        log "berth fleet-diff did not list the $WANT_CHANGED boxes of base-1:"; tail -3 "$WORK/diff.out" >&2
        return 1
    fi
    ms "$t0" "$t1"
}

# --- runs ------------------------------------------------------------------------------------------------

: >"$WORK/render_berth"; : >"$WORK/render_ref"; : >"$WORK/diff"
for run in $(seq 1 "$RUNS"); do
    # Alternate the order so warm caches favour no one.
    if [ $((run % 2)) -eq 1 ]; then
        b="$(render_berth)"; r="$(render_reference)"
    else
        r="$(render_reference)"; b="$(render_berth)"
    fi
    d="$(fleet_diff)"
    echo "$b" >>"$WORK/render_berth"; echo "$r" >>"$WORK/render_ref"; echo "$d" >>"$WORK/diff"
    log "run $run: render_all berth ${b} ms, compose config ${r} ms (scaled); fleet_diff ${d} ms"
done
render_berth_ms="$(median <"$WORK/render_berth")"
render_ref_ms="$(median <"$WORK/render_ref")"
diff_ms="$(median <"$WORK/diff")"
render_ratio="$(ratio "$render_berth_ms" "$render_ref_ms")"
proven="$(sed -n 's/^\([0-9]*\) box(es) proven unchanged.*/\1/p' "$WORK/diff.err")"

v_render="$(verdict "$render_ratio <= $TARGET_RENDER_RATIO")"
v_diff="$(verdict "$diff_ms <= $TARGET_DIFF_MS")"
result=PASS
for v in "$v_render" "$v_diff"; do [ "$v" = PASS ] || result=FAIL; done

echo "bench  boxes=$BOXES  runs=$RUNS  sample=$SAMPLE  berth=$BERTH_VERSION  compose=$COMPOSE_VERSION"
echo "render_all  berth_ms=$render_berth_ms  reference_ms=$render_ref_ms  berth/reference=${render_ratio}x  reference=compose_config_q_per_box_sampled_${SAMPLE}_scaled_to_${BOXES}  target=berth/reference<=${TARGET_RENDER_RATIO}x  $v_render"
echo "fleet_diff  berth_ms=$diff_ms  reference_ms=n/a  changed=$WANT_CHANGED  proven_unchanged=${proven:-0}  target=berth_ms<=$TARGET_DIFF_MS  $v_diff"
echo "result  $result"
[ "$result" = PASS ]
