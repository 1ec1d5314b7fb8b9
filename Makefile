# The two commands a newcomer needs: `make run` and `make test`. Both create the
# virtualenv and install what they need themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DB     := var/clearwall.db
# The demo's DNS over TLS and DNS over HTTPS listeners (certificate: var/tls/, made by init)
DOT    ?= 127.0.0.1:8853
DOH    ?= 127.0.0.1:8443

.PHONY: run test check lint typecheck bench fmt clean

# setup.py and the C sources: pip builds the C extensions (setup.py lists them) into
# src/, so a change to any of them must reinstall.
$(STAMP): pyproject.toml setup.py src/clearwall/policy/_nameindex.c src/clearwall/dnsserver/_udpbatch.c \
		src/clearwall/dnsserver/_lrustore.c src/clearwall/dnsserver/_fastpath.c \
		src/clearwall/dnsserver/_forward.c src/clearwall/dnsserver/_ratelimit.h \
		src/clearwall/dnsserver/_doh2.c src/clearwall/ledger/_merkle.c
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

## run: start clearwall on its embedded default (SQLite, demo policy, DNS 127.0.0.1:8053, DoT :8853, DoH :8443, portal 127.0.0.1:8080)
# ARGS passes extra flags to `clearwall serve`, e.g. make run ARGS="--dns 127.0.0.1:5353"
run: $(STAMP)
	@mkdir -p var
	@test -f $(DB) || $(PY) -m clearwall init --demo --db sqlite:///$(DB)
	@# init again: applies the migrations of a newer checkout, makes a missing TLS pair
	@$(PY) -m clearwall init --db sqlite:///$(DB) > /dev/null
	$(PY) -m clearwall serve --config examples/clearwall.toml --db sqlite:///$(DB) \
		--dot $(DOT) --doh $(DOH) --tls-cert var/tls/cert.pem --tls-key var/tls/key.pem $(ARGS)

## test: install system test dependencies, then run the whole test suite
# The system packages come first: the package's C modules build against some of them
# (libnghttp2's headers for the DoH listener).
test:
	bash scripts/install-system-deps.sh
	$(MAKE) $(STAMP)
	$(PY) -m pytest -q

## check: the quality gates: lint, types, tests
check: lint typecheck test

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## bench: benchmarks against the anchors (installs dnsperf and the anchor resolvers)
bench: $(STAMP)
	$(PY) bench/matcher.py
	$(PY) bench/ledger.py
	$(PY) bench/dns.py
	$(PY) bench/probe.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
