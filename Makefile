# The two commands a newcomer needs: `make demo` and `make test`.
# Both set up everything themselves on a fresh Debian machine (Python 3.11, root or sudo).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
CHROMIUM_PATH ?= /usr/bin/chromium
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test check audit fmt bench install chromium clean pixel buildtools

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

chromium:
	@test -x $(CHROMIUM_PATH) || { echo "installing Debian's Chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The pixel's build tools (terser, pinned in tools/package-lock.json): only for `make pixel` and the
# test that rebuilds p.min.js. Without npm (or offline) that one test is skipped, and says why.
buildtools:
	@test -x tools/node_modules/.bin/terser || { command -v npm >/dev/null \
	  && npm ci --prefix tools --ignore-scripts --no-audit --no-fund --silent \
	  || echo "note: terser not installed (no npm, or offline): the p.min.js rebuild test will be skipped"; }

# Build the served scripts from their readable sources: static/p.js → static/p.min.js, banner/banner.js →
# banner/banner.min.js (+ their .min.json).
pixel: $(STAMP) buildtools
	$(PY) tools/build_pixel.py

demo: $(STAMP)
	$(VENV)/bin/jobpixel demo

test: $(STAMP) chromium buildtools
	CHROMIUM_PATH=$(CHROMIUM_PATH) $(PY) -m pytest

check: $(STAMP)
	$(VENV)/bin/ruff check pixel_server tests bench tools
	$(VENV)/bin/ruff format --check pixel_server tests bench tools
	$(VENV)/bin/mypy
	@$(MAKE) --no-print-directory audit

# Known vulnerabilities in the installed dependencies (pip-audit, PyPI's advisory data). It needs the
# network: offline (or JOBPIXEL_SKIP_AUDIT=1) it says so and skips instead of failing `make check`;
# a vulnerability found fails it.
audit: $(STAMP)
	@if [ -n "$$JOBPIXEL_SKIP_AUDIT" ]; then echo "audit: skipped (JOBPIXEL_SKIP_AUDIT is set)"; exit 0; fi; \
	out=$$(timeout 180 $(VENV)/bin/pip-audit --progress-spinner off --skip-editable 2>&1); rc=$$?; \
	if [ $$rc -eq 0 ]; then n=$$(echo "$$out" | grep -c "could not be audited"); \
	  echo "audit: $$(echo "$$out" | head -n 1)$$( [ $$n -gt 0 ] && echo " — but $$n packages could not be audited (not found on the package index pip-audit reached)")"; \
	elif [ $$rc -eq 124 ] || echo "$$out" | grep -qiE "connection|resolv|timed? ?out|network|max retries|proxy|ssl|unreachable"; then \
	  echo "audit: skipped — pip-audit cannot reach its vulnerability database (offline?):"; \
	  echo "$$out" | tail -n 2 | sed 's/^/  /'; \
	else echo "$$out"; exit $$rc; fi

fmt: $(STAMP)
	$(VENV)/bin/ruff format pixel_server tests bench tools
	$(VENV)/bin/ruff check --fix pixel_server tests bench tools

bench: $(STAMP)
	$(PY) bench/collect.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
