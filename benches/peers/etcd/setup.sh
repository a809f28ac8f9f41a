#!/bin/sh
# Installs etcd 3.4 from Debian's `etcd-server` package for `benches/peers/reads.rs`
# (which skips its etcd cells, saying why, when `etcd` is missing). Needs
# root (or sudo). The package may enable a systemd unit; the benchmark never
# uses it: it starts its own members on loopback with temporary data dirs.
set -eu
if command -v etcd >/dev/null 2>&1; then
    etcd --version | head -n 1
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y etcd-server
etcd --version | head -n 1
