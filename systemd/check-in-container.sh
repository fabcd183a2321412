#!/bin/sh
# Check systemd/berth.service under a real systemd (PID 1 of a Debian container), with all its hardening:
# it starts (READY=1 after the first cycle), converges the engine through the host's Docker socket, serves
# `berth status`, pings the watchdog, is restarted after a crash, and is NOT restarted on a bad config
# (exit 78). `systemd-analyze verify` (tests/systemd.rs) checks the syntax; this checks that the agent
# still works inside the sandbox the unit builds. Run it after changing the unit. It takes a few minutes
# the first time (debootstrap of a minimal Debian with systemd, cached in $BERTH_UNIT_ROOTFS).
#
# The agent follows hosts/edge-02 of config-examples/fleet (no bind mounts: the container's /var/lib/berth
# is not the host's, and dockerd resolves bind-mount sources on the host). It runs as agent_id
# unit-check-PID; everything it and this script create is removed on exit.
set -eu
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ROOTFS="${BERTH_UNIT_ROOTFS:-/var/cache/berth/unit-rootfs}"
SUITE="${BERTH_UNIT_SUITE:-bookworm}"
ID="unit-check-$$"
NAME="berth-$ID"
IMAGE="berth-unit-check:$$"
WORK="$(mktemp -d /tmp/berth-unit-check.XXXXXX)"

cleanup() {
    rc=$?
    trap - EXIT INT TERM
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    ids="$(docker ps -aq --filter "label=io.berth.agent=$ID")"
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    ids="$(docker network ls -q --filter "label=io.berth.agent=$ID")"
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker network rm $ids >/dev/null 2>&1 || true
    docker rmi "$IMAGE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { log "FAIL: $*"; docker exec "$NAME" journalctl -u berth --no-pager -n 30 >&2 || true; exit 1; }
ok() { log "ok: $*"; }
in_box() { docker exec "$NAME" "$@"; }
prop() { in_box systemctl show berth -p "$1" --value; }
# poll SECONDS COMMAND...: until COMMAND succeeds
poll() {
    n=$(($1 * 5)); shift
    while ! "$@" >/dev/null 2>&1; do
        n=$((n - 1)); [ "$n" -gt 0 ] || return 1
        sleep 0.2
    done
}

ensure_packages git:git debootstrap:debootstrap gcc:gcc /usr/include/stdio.h:libc6-dev \
    pkg-config:pkg-config /usr/include/openssl/ssl.h:libssl-dev
ensure_cargo
ensure_dockerd
ensure_test_image
log "building berth (cargo build --release)"
cargo build --release --locked
BERTH="${CARGO_TARGET_DIR:-$ROOT/target}/release/berth"

if [ ! -x "$ROOTFS/lib/systemd/systemd" ]; then
    log "debootstrap $SUITE with systemd into $ROOTFS"
    rm -rf "$ROOTFS.new"
    mkdir -p "$(dirname "$ROOTFS")"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libssl3,zlib1g \
        "$SUITE" "$ROOTFS.new" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 20 "$WORK/debootstrap.log" >&2; exit 1; }
    rm -rf "$ROOTFS"
    mv "$ROOTFS.new" "$ROOTFS"
fi

# The installation the README describes, on a copy of the root file system.
box="$WORK/rootfs"
cp -a "$ROOTFS" "$box"
install -m 0755 "$BERTH" "$box/usr/local/bin/berth"
install -m 0644 systemd/berth.service "$box/etc/systemd/system/berth.service"
ln -sf /etc/systemd/system/berth.service "$box/etc/systemd/system/multi-user.target.wants/berth.service"
install -d -m 0750 "$box/etc/berth"
cat >"$box/etc/berth/config.yaml" <<EOF
agent_id: $ID
source:
  url: /srv/fleet.git
  branch: main
  path: hosts/edge-02
  interval: 10s
EOF
git init -q "$WORK/fleet"
cp -R config-examples/fleet/. "$WORK/fleet/"
git -C "$WORK/fleet" checkout -q -b main
git -C "$WORK/fleet" add -A
git -C "$WORK/fleet" -c user.name=check -c user.email=check@berth.invalid commit -q -m fleet
rm -rf "$box/srv/fleet.git"
git clone -q --bare "$WORK/fleet" "$box/srv/fleet.git"
tar -C "$box" -c . | docker import --change 'CMD ["/sbin/init"]' - "$IMAGE" >/dev/null

# systemd as PID 1 without --privileged: SYS_ADMIN for its mounts and namespaces, no seccomp or AppArmor
# profile of Docker's own in the way of the unit's.
docker run -d --name "$NAME" --hostname "$ID" --cap-add SYS_ADMIN \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --tmpfs /run --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
    -v /var/run/docker.sock:/var/run/docker.sock "$IMAGE" >/dev/null

is_active() { [ "$(prop ActiveState)" = active ]; }
applied() { in_box berth status --json | tr -d ' \n' | grep -q '"applied_commit":"[0-9a-f]\{40\}"'; }
reader_runs() { docker ps -q --filter "label=io.berth.agent=$ID" --filter status=running | grep -q .; }

poll 120 is_active || fail "berth.service did not become active (READY=1)"
ok "berth.service active: $(prop ExecMainPID | sed 's/^/main pid /')"
poll 30 applied || fail "berth status shows no applied revision"
poll 30 reader_runs || fail "no running container of agent $ID"
ok "converged through /var/run/docker.sock; berth status answers on /run/berth/berth.sock"

pid="$(prop MainPID)"
st="$(in_box cat "/proc/$pid/status")"
echo "$st" | grep -q '^NoNewPrivs:[[:space:]]*1' || fail "NoNewPrivs not set"
echo "$st" | grep -q '^Seccomp:[[:space:]]*2' || fail "no seccomp filter"
in_box sh -c "grep -q ' / / ro,' /proc/$pid/mountinfo" || fail "/ is not read-only for the agent"
[ "$(prop WatchdogUSec)" != 0 ] || fail "no watchdog"
ok "sandboxed: NoNewPrivs, seccomp, read-only /, watchdog $(prop WatchdogUSec)"

in_box sh -c "kill -KILL $pid"
restarted() { is_active && [ "$(prop NRestarts)" -ge 1 ]; }
poll 60 restarted || fail "not restarted after SIGKILL"
ok "restarted after SIGKILL (Restart=on-failure)"

in_box sh -c 'echo "bogus: 1" >>/etc/berth/config.yaml'
in_box systemctl restart berth >/dev/null 2>&1 || true
failed() { [ "$(prop ActiveState)" = failed ]; }
poll 30 failed || fail "a bad config did not fail the unit"
[ "$(prop ExecMainStatus)" = 78 ] || fail "bad config exited $(prop ExecMainStatus), not 78"
restarts="$(prop NRestarts)"
# Prove a negative: no restart within more than RestartSec=.
sleep 12
if [ "$(prop ActiveState)" != failed ] || [ "$(prop NRestarts)" != "$restarts" ]; then
    fail "restarted on a bad config"
fi
ok "bad config: exit 78, not restarted (RestartPreventExitStatus=78)"
log "PASS: berth.service works under systemd $(in_box systemctl --version | awk 'NR == 1 { print $2 }')"
