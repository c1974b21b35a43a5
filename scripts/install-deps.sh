#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Installs the Debian packages Coffer builds and tests with, and the system
# user "coffer" that runs the development PostgreSQL cluster when Coffer runs
# as root. Idempotent: when everything is present it only checks, fast and
# without network. Installing postgresql-15 makes Debian create and start a
# default "main" cluster; Coffer never uses it, and this script neither stops
# nor changes any system service.
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang clang-format
  softhsm2 p11-kit libp11-kit-dev opensc
  libssl-dev openssl
  libpq-dev postgresql-15 postgresql-client-15
  postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
  libyaml-dev libevent-dev libjansson-dev libcurl4-openssl-dev
  libcmocka-dev valgrind curl wrk python3
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps: as root run: apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [[ $(id -u) -eq 0 ]] && ! getent passwd coffer >/dev/null; then
  echo "install-deps: creating system user coffer"
  useradd --system --no-create-home --shell /usr/sbin/nologin coffer
fi
