#!/usr/bin/env bash
# Installs the Debian packages the test suite starts for real: an authoritative DNS
# server (nsd) as upstream, the resolvers our RPZ primary feeds (Unbound, PowerDNS
# Recursor, BIND, Knot Resolver), PostgreSQL, Chromium for the browser tests, Go's sumdb
# packages for the ledger interoperability test, iproute2/nftables for the probe's
# network-in-a-box. Idempotent; needs root (CI runs as root). Without root it only
# reports what is missing, and the tests that need a missing component say so.
set -euo pipefail

PACKAGES=(
  nsd                       # real upstream authoritative server for DNS tests
  postgresql                # the store at scale
  chromium                  # real browser for portal tests (Playwright drives it)
  golang-go                 # Go toolchain for the ledger interop verifier
  golang-golang-x-mod-dev   # golang.org/x/mod/sumdb/{note,tlog}
  iproute2                  # ip netns / veth for the probe's test network
  nftables                  # interference rules in the probe's test network
  iptables
  openssl                   # test CA for HTTPS targets
  procps                    # pkill/ps used by service scripts
  unbound                   # loads our RPZ export (tests/formats); the reference and validating upstream of tests/dnsserver; its tls-port a DoT upstream; RPZ secondary (tests/xfr)
  knot-dnsutils             # kdig: the DoT (+tls) and DoH (+https) client of tests/dnsserver
  curl                      # curl --doh-url: a DoH client of tests/dnsserver
  libssl-dev                # headers of OpenSSL's libcrypto: the rules digest's C Merkle root (setup.py)
  libnghttp2-dev            # headers of libnghttp2: the DoH listener's HTTP/2 C module (setup.py)
  prometheus                # promtool checks deploy/prometheus rules; a real server evaluates them
  systemd                   # systemd-analyze verify checks deploy/systemd units
  pdns-recursor             # RPZ secondary by zone transfer, EDE per zone (tests/xfr)
  bind9                     # RPZ secondary zones, response-policy (tests/xfr)
  knot-resolver             # RPZ from files written by `export rpz --watch` (tests/xfr)
  lua-cqueues               # lets Knot Resolver reload an RPZ file when it changes
)
# npm installs axe-core for the console's accessibility test (into .cache/npm, by the test
# fixture). NodeSource's nodejs ships its own npm, which Debian's npm package conflicts
# with: ask for Debian's only when no npm command exists at all.
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "system packages: all present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "system packages missing and not root, tests needing them will skip: ${missing[*]}" >&2
  exit 0
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts daemons on install; the tests start their own instances.
for svc in nsd postgresql unbound pdns-recursor named bind9 kresd@1; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || service "$svc" stop >/dev/null 2>&1 || true
done
echo "system packages installed"
