# The two commands a new user runs: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV := $(VENV)/bin/uv

.PHONY: run install dovecot test check lint typecheck unit fuzz soak bench bench-10k synth rehearse clean

REQUIREMENTS := requirements.txt requirements-local.txt requirements-cdk.txt requirements-dev.txt
WHEELHOUSE := $(VENV)/wheelhouse

# The pins are the requirements files'; the two distributions (the server, ./client) install editable on top.
# uv (from PyPI, into the venv) installs them: the same versions as pip resolves, in seconds instead of minutes.
# The wheelhouse holds the client's dependencies, for tests/packaging (which installs the client offline).
$(STAMP): $(REQUIREMENTS) pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==0.13.9
	$(UV) pip install --quiet --python $(PY) --upgrade pip $(addprefix -r ,$(REQUIREMENTS))
	$(UV) pip install --quiet --python $(PY) --no-deps -e . -e client
	rm -rf $(WHEELHOUSE)
	$(PY) -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) ./client
	rm -f $(WHEELHOUSE)/genro_mail_proxy_client-*.whl
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	exec $(PY) -m mailproxy_local.runner

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy mailproxy mailproxy_local functions stacks app.py client bench rehearsal

# The bounce and PEC tests run a real Dovecot (tests/imap_server.py): installed from Debian's packages when
# missing. policy-rc.d keeps the package's postinst from starting the system service (the tests start their own).
dovecot:
	@command -v dovecot >/dev/null || test -x /usr/sbin/dovecot || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  POLICY=; [ -e /usr/sbin/policy-rc.d ] || POLICY=/usr/sbin/policy-rc.d; \
	  [ -z "$$POLICY" ] || { printf '#!/bin/sh\nexit 101\n' | $$SUDO tee $$POLICY >/dev/null && $$SUDO chmod +x $$POLICY; }; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dovecot-imapd \
	    || { $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dovecot-imapd; }; \
	  status=$$?; [ -z "$$POLICY" ] || $$SUDO rm -f $$POLICY; exit $$status; }

# One pytest worker per core (pytest-xdist). A test file stays on one worker, so a module's fixtures (the
# local stack of tests/client) start once; session fixtures start once per worker. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: lint typecheck dovecot
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=15

# The inner loop (~2-3 min here): ruff, then the unit, integration and infrastructure tiers and the fast
# reliability files (no subprocess stack, no fuzz, no soak). `make test` still runs everything.
CHECK_TESTS := tests/unit tests/integration tests/infrastructure \
	tests/reliability/test_hostile_input.py tests/reliability/test_hostile_mime.py
check: lint dovecot
	$(PY) -m pytest -q -p no:cacheprovider --durations=5 $(CHECK_TESTS)

# Pure logic only (about a second of tests): no moto, no servers.
unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

# The full fuzz: random examples, many per operation (`make test` runs 20 fixed ones per operation).
FUZZ_EXAMPLES ?= 200
fuzz: $(STAMP)
	GMP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider -s tests/reliability/test_fuzz_api.py

soak: $(STAMP)
	GMP_SOAK_MESSAGES=10000 $(PY) -m pytest -q -m soak tests/reliability
	GMP_REPORT_VOLUME=5000 $(PY) -m pytest -q tests/integration/test_reporter.py -k thousands
	GMP_JOBS_VOLUME=20000 $(PY) -m pytest -q tests/integration/test_jobs.py -k large_suspend

bench: $(STAMP)
	$(PY) -m bench.run

# The local stack end to end at 10,000 messages too (issue 16's own target for that N: ~10 min more).
bench-10k: $(STAMP)
	$(PY) -m bench.run --sections stack --sizes 500,2000,10000

synth: $(STAMP)
	$(PY) -m stacks.build_layer
	CDK_OUTDIR=cdk.out $(PY) app.py

# The deploy rehearsal (docs/deploy.md): synthesize, stand the stack up in moto, run one message end to end
# under the functions' own roles, scan the template (checkov, cfn-lint: their own venv, their pins clash
# with ours), and import the assets on the runtimes' Pythons.
SCAN_VENV := .venv-scan
$(SCAN_VENV)/.installed:
	test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30 cfn-lint==1.58.0
	touch $@

rehearse: $(STAMP) $(SCAN_VENV)/.installed
	$(PY) -m stacks.build_layer
	$(PY) -m rehearsal --scan --runtimes

clean:
	rm -rf $(VENV) $(SCAN_VENV) cdk.out build .mypy_cache .ruff_cache
