# The two commands a new user runs: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run install test check lint typecheck unit fuzz soak bench synth rehearse clean

REQUIREMENTS := requirements.txt requirements-local.txt requirements-cdk.txt requirements-dev.txt
WHEELHOUSE := $(VENV)/wheelhouse

# The pins are the requirements files'; the two distributions (the server, ./client) install editable on top.
# The wheelhouse holds the client's dependencies, for tests/packaging (which installs the client offline).
$(STAMP): $(REQUIREMENTS) pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS))
	$(PY) -m pip install --quiet --no-deps -e . -e client
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

test: lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

# The inner loop (~2-3 min here): ruff, then the unit, integration and infrastructure tiers and the fast
# reliability files (no subprocess stack, no fuzz, no soak). `make test` still runs everything.
CHECK_TESTS := tests/unit tests/integration tests/infrastructure \
	tests/reliability/test_hostile_input.py tests/reliability/test_hostile_mime.py
check: lint
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

bench: $(STAMP)
	$(PY) -m bench.run

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
