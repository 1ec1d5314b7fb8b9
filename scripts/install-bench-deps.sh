#!/usr/bin/env bash
# Installs what bench/dns.py runs: dnsperf (load generator), nsd (the shared upstream)
# and the anchor resolvers (unbound, pdns-recursor, knot-resolver, dnsmasq), all from
# Debian's packages. Idempotent. Debian starts some of these daemons on install; the
# benchmark starts its own instances on loopback ports, so the system services are
# stopped and disabled here (they would otherwise hold port 53 and take CPU).
set -euo pipefail

PACKAGES=(
  dnsperf          # load generator
  nsd              # the one upstream every server forwards to
  unbound          # anchor
  pdns-recursor    # anchor
  knot-resolver    # anchor (kresd)
  dnsmasq-base     # anchor (the binary only, no system service)
  bind9            # an RPZ secondary in bench/fleet.py
  lua-cqueues      # Knot Resolver reloads an RPZ file when it changes (bench/fleet.py)
  util-linux       # taskset
  procps
)
SERVICES=(unbound pdns-recursor kresd@1 nsd dnsmasq named)

stop_services() {
  for svc in "${SERVICES[@]}"; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
      systemctl stop "$svc" >/dev/null 2>&1 || true
      systemctl disable "$svc" >/dev/null 2>&1 || true
    else
      service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "bench packages: all present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "bench packages missing and not root: ${missing[*]}" >&2
  exit 1
fi
echo "installing bench packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep Debian from starting the daemons at all where policy-rc.d is honoured.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
trap 'if [[ $created_policy == 1 ]]; then rm -f "$policy"; fi' EXIT
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
stop_services
echo "bench packages installed"
