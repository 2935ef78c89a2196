# Two entry points for a fresh Debian 12 machine: `make compare` and `make test`.
# Both create .venv, install the package, and (as root) the Debian tools the tests use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PKGS := strace nghttp2-client nghttp2-server tshark curl openssl iproute2 python3-venv gcc python3-dev linux-perf
STAMP := $(VENV)/.installed

.PHONY: setup compare test lint clean

$(STAMP): pyproject.toml setup.py tls_probe/_recordwalk.c $(wildcard strace_parsers/_fastcount*.[ch])
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	fi
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	rm -f tls_probe/_recordwalk*.so strace_parsers/_fastcount*.so  # a failed rebuild must not leave the old one in use
	$(BIN)/python -m pip install -q -e '.[dev]'
	@$(BIN)/python -c 'import tls_probe._recordwalk' 2>/dev/null || echo "note: the C record \
	counter was not built (no C compiler or Python headers?): the TLS probe runs its slower \
	pure-Python path (tls_record_counter: python)"
	@$(BIN)/python -c 'import strace_parsers._fastcount' 2>/dev/null || echo "note: the C strace \
	counter was not built (no C compiler or Python headers?): strace_parsers counts with its \
	slower pure-Python path (writeshape syscalls --stats says: python)"
	touch $(STAMP)

setup: $(STAMP)

compare: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/writeshape compare $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy toolkit strace_parsers tls_probe
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy toolkit strace_parsers tls_probe

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
