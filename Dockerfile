# modelserve: the service and the models from models/, no torch, no compilers.
#   docker build -t modelserve .                      (podman: add --format docker for the HEALTHCHECK)
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:8081:8081 modelserve     # HTTP, gRPC (h2c)
#   docker run --rm -p 127.0.0.1:8080:8080 -v "$PWD/models:/models:ro" modelserve   # your own models
# The runtime stage is last, so a plain build gives it. Training image (torch CPU; writes into a mounted models/):
#   docker build --target train -t modelserve-train .
#   docker run --rm -v "$PWD/models:/work/models" modelserve-train image --data digits --name digits
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------- build
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY service ./service
# Only the service package: the runtime never imports training code or torch.
# Then slim it: no pip or setuptools, no tests, no onnxruntime offline tools (quantisation and transformer
# optimisers are training-side), and extension modules stripped of debug symbols (uvloop ships 14 MB of
# them); the auditwheel-patched libraries in *.libs/ must stay as they are.
RUN /opt/venv/bin/pip install --no-compile . \
 && /opt/venv/bin/pip uninstall -y setuptools pip \
 && SITE=$(echo /opt/venv/lib/python3*/site-packages) \
 && rm -rf "$SITE"/onnxruntime/transformers "$SITE"/onnxruntime/tools "$SITE"/onnxruntime/quantization \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && find /opt/venv -path '*/site-packages/*/tests' -prune -exec rm -rf {} + \
 && if apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends binutils >/dev/null 2>&1; then \
      find /opt/venv -name '*.cpython-*.so' -not -path '*.libs/*' -type f -exec strip --strip-unneeded {} + ; fi
# The models, readable by any uid whatever modes the build context had.
COPY models /models
RUN chmod -R a+rX,go-w /models

# ---------------------------------------------------------------------------------------------- train
FROM ${BASE_IMAGE} AS train
# torch 2.13.0 CPU: from the PyTorch CPU index by default; point PIP_FIND_LINKS at a folder of wheels
# (build with -v /opt/wheels:/wheels --build-arg PIP_FIND_LINKS=/wheels) to install offline.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /work
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
RUN PIP_EXTRA_INDEX_URL="$PIP_EXTRA_INDEX_URL" PIP_FIND_LINKS="$PIP_FIND_LINKS" /opt/venv/bin/pip install '.[train]'
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
ENTRYPOINT ["modelserve", "train"]
CMD ["--help"]

# -------------------------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
COPY --from=build /opt/venv /opt/venv
COPY --from=build /models /models
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELSERVE_MODELS_DIR=/models \
    MODELSERVE_HOST=0.0.0.0 \
    MODELSERVE_PORT=8080 \
    MODELSERVE_GRPC_PORT=8081 \
    MODELSERVE_LOG_FORMAT=json
# Any non-root uid works; models are world-readable and nothing is written at run time.
USER 10001:10001
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=2).status != 200)"]
# Exec form: modelserve is PID 1's command, so SIGTERM reaches the server and it drains.
ENTRYPOINT ["modelserve", "serve"]
