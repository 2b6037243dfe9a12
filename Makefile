# The README's commands. Each target makes its own virtualenv (.venv) on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: serve test lint models bench image clean help

help:
	@echo "make serve   - install the service and serve models/ on 0.0.0.0:$(PORT)"
	@echo "make test    - install everything and run the tests"
	@echo "make lint    - ruff and mypy"
	@echo "make models  - retrain and export the shipped models (digits, sentiment)"
	@echo "make bench   - run the benchmarks (bench/README.md)"
	@echo "make image   - build the Docker image with podman or docker"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: reinstall only when pyproject.toml changes.
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[train,dev]'
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve
	$(BIN)/modelserve serve --port $(PORT)

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(VENV)/.dev
	$(BIN)/ruff check service training tests bench
	$(BIN)/ruff format --check service training tests bench
	$(BIN)/mypy service training

models: $(VENV)/.dev
	$(BIN)/python -m training.make_sentiment
	$(BIN)/modelserve train image --data digits --name digits --version 1 --epochs 20 --no-progress
	$(BIN)/modelserve train text --data sentiment --name sentiment --version 1 --epochs 20 --no-progress
	$(BIN)/python -m training.make_examples

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache

image:
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then docker build -t modelserve .; \
	else eval "$$(bash ../shared/container/prepare.sh)" && podman build --format docker \
	  --build-arg BASE_IMAGE="$$BASE_IMAGE" -t modelserve .; fi

bench: $(VENV)/.dev
	@command -v wrk >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } \
	  || { echo "bench needs wrk (apt-get install wrk)"; exit 1; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)
