"""Builds the C extensions; everything else about the package is in pyproject.toml.

Each is a hand-written fast path that a benchmark showed was needed, tested against the
Python or library code it stands in for: the policy name index (``bench/matcher.py``),
the key table a whole compile serves from first (``clearwall serve``'s first start,
``bench/dns.py``), the batched UDP I/O of the DNS listener, the chain's fused UDP fast
path and its fused cache-miss path with the upstream sockets (``bench/dns.py``), the answer cache's
one-record-per-entry LRU store (memory per entry, ``bench/cache_memory.py``), and the DoH
listener's HTTP/2 over libnghttp2 (``bench/dns.py``'s DoH rows; built only where
libnghttp2's headers are installed, ``scripts/install-system-deps.sh``; without it the
listener uses the pure-Python h2), and the rules digest's Merkle root over OpenSSL's
SHA-256 (``clearwall serve``'s first start; without libssl's headers, the Python one).
"""

import os

from setuptools import Extension, setup

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
# CPython's static type and method tables trip these two; nothing else may warn.
TABLE_FLAGS = ["-Wno-missing-field-initializers", "-Wno-cast-function-type"]

setup(
    ext_modules=[
        Extension(
            "clearwall.policy._nameindex",
            ["src/clearwall/policy/_nameindex.c"],
            depends=["src/clearwall/policy/_siphash.h"],
            extra_compile_args=CFLAGS,
        ),
        Extension(
            "clearwall.policy._keytable",
            ["src/clearwall/policy/_keytable.c"],
            depends=["src/clearwall/policy/_siphash.h"],
            extra_compile_args=[*CFLAGS, *TABLE_FLAGS],
        ),
        Extension(
            "clearwall.dnsserver._udpbatch",
            ["src/clearwall/dnsserver/_udpbatch.c"],
            extra_compile_args=[*CFLAGS, *TABLE_FLAGS],
        ),
        Extension(
            "clearwall.dnsserver._fastpath",
            ["src/clearwall/dnsserver/_fastpath.c"],
            depends=["src/clearwall/dnsserver/_ratelimit.h"],
            # Token-bucket arithmetic must round exactly as the Python step's does.
            extra_compile_args=[*CFLAGS, *TABLE_FLAGS, "-ffp-contract=off"],
        ),
        Extension(
            "clearwall.dnsserver._forward",
            ["src/clearwall/dnsserver/_forward.c"],
            depends=["src/clearwall/dnsserver/_ratelimit.h"],
            extra_compile_args=[*CFLAGS, *TABLE_FLAGS, "-ffp-contract=off"],
        ),
        Extension(
            "clearwall.dnsserver._lrustore",
            ["src/clearwall/dnsserver/_lrustore.c"],
            extra_compile_args=CFLAGS,
        ),
        *(
            [
                Extension(
                    "clearwall.ledger._merkle",
                    ["src/clearwall/ledger/_merkle.c"],
                    libraries=["crypto"],
                    extra_compile_args=[*CFLAGS, *TABLE_FLAGS],
                )
            ]
            if os.path.exists("/usr/include/openssl/sha.h")
            else []
        ),
        *(
            [
                Extension(
                    "clearwall.dnsserver._doh2",
                    ["src/clearwall/dnsserver/_doh2.c"],
                    libraries=["nghttp2"],
                    extra_compile_args=[*CFLAGS, *TABLE_FLAGS],
                )
            ]
            if os.path.exists("/usr/include/nghttp2/nghttp2.h")
            else []
        ),
    ]
)
