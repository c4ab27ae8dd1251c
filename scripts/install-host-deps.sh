#!/usr/bin/env bash
# Host tools the netns integration tests and `sluice init-iptables` need: iptables/ip6tables (nf_tables
# backend is fine), iproute2 (ip, ss) and setpriv (util-linux). Idempotent: installs only what is missing.
set -euo pipefail

declare -A package_of=(
  [iptables]=iptables
  [ip6tables]=iptables
  [iptables-save]=iptables
  [iptables-restore]=iptables
  [ip6tables-save]=iptables
  [ip6tables-restore]=iptables
  [ip]=iproute2
  [ss]=iproute2
  [setpriv]=util-linux
)

missing=()
for command in "${!package_of[@]}"; do
  if ! command -v "$command" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$command" ] && ! [ -x "/sbin/$command" ]; then
    missing+=("${package_of[$command]}")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-host-deps: iptables, iproute2 and setpriv already present"
  exit 0
fi

packages=$(printf '%s\n' "${missing[@]}" | sort -u | paste -sd' ')
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-host-deps: missing packages ($packages) and no apt-get to install them" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "install-host-deps: missing packages ($packages); run as root to install them" >&2
    exit 1
  fi
fi

echo "install-host-deps: installing $packages"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
"${sudo[@]}" apt-get install -y -qq --no-install-recommends $packages >/dev/null
echo "install-host-deps: done"
