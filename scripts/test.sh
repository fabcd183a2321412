#!/bin/sh
# Run every test: unit tests and the integration tests in tests/, against a real Docker engine and real
# Git repositories and Git servers on loopback (git daemon, git http-backend, sshd). Installs what is missing (apt-get), starts dockerd if none runs, builds the test image.
# promtool (Debian's prometheus package) checks and unit-tests config-examples/monitoring/; on a host run by
# systemd the package also starts a Prometheus server on :9090 (`systemctl disable --now prometheus`).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh converge`).
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages git:git systemd-analyze:systemd gcc:gcc /usr/include/stdio.h:libc6-dev pkg-config:pkg-config \
    /usr/include/openssl/ssl.h:libssl-dev /usr/sbin/sshd:openssh-server \
    /usr/bin/docker-registry:docker-registry htpasswd:apache2-utils promtool:prometheus
# source.verify tests sign commits and tags with real SSH and OpenPGP keys.
ensure_packages gpg:gnupg gpgconf:gpgconf ssh-keygen:openssh-client
ensure_cargo
ensure_dockerd
ensure_test_image

log "cargo test $*"
exec cargo test --locked "$@"
