#!/usr/bin/env bash
# Installs every Debian package v4host needs to build and test on a fresh Debian 12 machine.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(build-essential cmake ninja-build pkg-config git
      nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libssl-dev
      libgtest-dev libgmock-dev libbenchmark-dev
      libboost-dev libyaml-cpp-dev libsqlite3-dev sqlite3 libsimdjson-dev
      bubblewrap chromium python3
      clang libclang-rt-14-dev)
# Node (for the official SDK test clients) may come from nodesource, which bundles npm.
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Node test clients (official SDKs, agent CLIs, HF tokenizers) live in tests/node. Installed when
# absent or when the lock file changed since the last install (npm records what it installed).
if [ -f tests/node/package.json ]; then
  if [ ! -f tests/node/node_modules/.package-lock.json ] ||
     [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
    (cd tests/node && npm install --no-audit --no-fund --loglevel=error) || echo "setup: npm install failed; node-driven tests will be skipped"
  fi
fi
echo "setup: ok"
