# modelserve: the service and the models from models/, no torch, no compilers.
#   docker build -t modelserve .                      (podman: add --format docker for the HEALTHCHECK)
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:8081:8081 modelserve     # HTTP, gRPC (h2c)
#   docker run --rm -p 127.0.0.1:8080:8080 -v "$PWD/models:/models:ro" modelserve   # your own models
#   docker run --rm -p 127.0.0.1:8080:8080 -e MODELSERVE_MODELS_DIR=s3://bucket/models \
#     -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_ENDPOINT_URL modelserve      # models from S3
# The runtime stage is last, so a plain build gives it. Training image (torch CPU; writes into a mounted models/):
#   docker build --target train -t modelserve-train .
#   docker run --rm -v "$PWD/models:/work/models" modelserve-train image --data digits --name digits
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------- build
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python3 -m venv /opt/venv
# The locked set first (exact versions, every file's hash checked: the same bits on every host and day;
# `make lock` refreshes it), then the service itself without resolving anything again.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-compile --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
# Only the service package: the runtime never imports training code or torch.
# Then slim it (docs/deployment.md has the sizes): no pip or setuptools, no tests, no onnxruntime offline
# tools (quantisation and transformer optimisers are training-side) and no libonnxruntime.so (the C API
# library, 34 MB: the Python module links its own copy and never loads it), botocore's API models for the
# 400-odd AWS services other than S3 and the credential ones (STS, SSO), numpy's f2py, C headers and SIMD
# test module, and
# numpy's random, polynomial and distutils packages (4 MB; imported only on first use, and neither the
# service nor numpy's own functions use them: numpy.ma stays, np.median calls it), Pillow's font renderer (_imagingft with FreeType, HarfBuzz and Brotli: 3 MB;
# image-prune.sh drops the libraries once nothing links them),
# huggingface-hub and what only it needs (tokenizers requires it for from_pretrained, which the service never
# calls: it reads the model's own tokenizer.json; 18 MB with hf-xet), Pillow's AVIF codec (5 MB; AVIF is
# not a format the image kind takes), and
# extension modules stripped of debug symbols (uvloop ships 14 MB of them, tokenizers 3); the auditwheel-patched
# libraries in *.libs/ must stay as they are.
RUN /opt/venv/bin/pip install --no-compile --no-deps . \
 && /opt/venv/bin/pip uninstall -y -q huggingface-hub hf-xet fsspec pyyaml tqdm filelock httpx2 httpcore2 truststore \
 && /opt/venv/bin/pip uninstall -y setuptools pip \
 && SITE=$(echo /opt/venv/lib/python3*/site-packages) \
 && rm -rf "$SITE"/onnxruntime/transformers "$SITE"/onnxruntime/tools "$SITE"/onnxruntime/quantization \
           "$SITE"/onnxruntime/capi/libonnxruntime.so.* \
           "$SITE"/numpy/f2py "$SITE"/numpy/_core/include "$SITE"/numpy/_core/lib "$SITE"/numpy/random/lib \
           "$SITE"/numpy/_core/_simd.* "$SITE"/PIL/_avif.* "$SITE"/pillow.libs/libavif-* \
           "$SITE"/PIL/_imagingft.* "$SITE"/numpy/random "$SITE"/numpy/polynomial "$SITE"/numpy/distutils \
 && find "$SITE"/botocore/data -mindepth 1 -maxdepth 1 -type d \
      -not -name s3 -not -name sts -not -name sso -not -name sso-oidc -exec rm -rf {} + \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && find /opt/venv -path '*/site-packages/*/tests' -prune -exec rm -rf {} + \
 && if apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends binutils >/dev/null 2>&1; then \
      find /opt/venv \( -name '*.cpython-*.so' -o -name '*.abi3.so' \) -not -path '*.libs/*' -type f \
        -exec strip --strip-unneeded {} + ; fi
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

# ----------------------------------------------------------------------------------------------- slim
# The base less what a Python server never runs (docs/deployment.md has the sizes): perl (47 MB of
# modules), apt with the TLS stack only its download methods link (gnutls, p11-kit, nettle), locales,
# docs and man pages, glibc's iconv modules, pip's bundled wheels, and the stdlib's IDE, Tk, 2to3,
# distutils, ensurepip, sqlite3, dbm and test modules. Files only: the package database still lists every
# package, so a scanner reports at least what is there and hides nothing.
FROM ${BASE_IMAGE} AS slim
RUN rm -rf /usr/share/perl /usr/share/perl5 /usr/lib/*-linux-gnu/perl /usr/lib/*-linux-gnu/perl5 \
           /usr/lib/*-linux-gnu/perl-base /usr/lib/*-linux-gnu/libperl.so* /usr/bin/perl /usr/bin/perl5* \
           /usr/bin/apt /usr/bin/apt-* /usr/lib/apt /usr/lib/*-linux-gnu/libapt-* /var/lib/apt /var/cache/* \
           /usr/lib/*-linux-gnu/libgnutls* /usr/lib/*-linux-gnu/libp11-kit* /usr/lib/*-linux-gnu/pkcs11 \
           /usr/lib/*-linux-gnu/libnettle* /usr/lib/*-linux-gnu/libhogweed* /usr/lib/*-linux-gnu/libtasn1* \
           /usr/lib/*-linux-gnu/libsqlite3* /usr/share/p11-kit \
           /usr/share/locale /usr/share/doc /usr/share/man /usr/share/info /usr/share/lintian \
           /usr/lib/*-linux-gnu/gconv /usr/share/python-wheels \
 && for lib in /usr/lib/python3.* /usr/local/lib/python3.*; do \
      rm -rf "$lib"/idlelib "$lib"/tkinter "$lib"/turtledemo "$lib"/lib2to3 "$lib"/ensurepip "$lib"/pydoc_data \
             "$lib"/distutils "$lib"/sqlite3 "$lib"/dbm "$lib"/test "$lib"/*/test "$lib"/*/tests \
             "$lib"/lib-dynload/_sqlite3.* "$lib"/lib-dynload/_dbm.* "$lib"/lib-dynload/_gdbm.* \
             "$lib"/lib-dynload/_test* "$lib"/lib-dynload/_ctypes_test.* "$lib"/lib-dynload/xxlimited* \
             "$lib"/lib-dynload/_xxtestfuzz.*; \
    done
COPY --from=build /opt/venv /opt/venv
COPY --from=build /models /models
# Then only the programs a person looks around with and the libraries something left links (the script
# says how it decides and fails the build if anything kept misses a library).
COPY deploy/image-prune.sh /tmp/image-prune.sh
RUN sh /tmp/image-prune.sh && rm /tmp/image-prune.sh

# -------------------------------------------------------------------------------------------- runtime
# One layer holding only what is left: files deleted in a layer above the base would still be shipped.
FROM scratch AS runtime
COPY --from=slim / /
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELSERVE_MODELS_DIR=/models \
    MODELSERVE_HOST=0.0.0.0 \
    MODELSERVE_PORT=8080 \
    MODELSERVE_GRPC_PORT=8081 \
    MODELSERVE_LOG_FORMAT=json
# Any non-root uid works; models are world-readable. Nothing is written at run time, except that an
# s3:// repository (MODELSERVE_MODELS_DIR=s3://bucket/prefix) is fetched into MODELSERVE_MODELS_CACHE_DIR
# (default /tmp/modelserve-cache: give /tmp a volume when the root file system is read-only).
USER 10001:10001
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=2).status != 200)"]
# Exec form: modelserve is PID 1's command, so SIGTERM reaches the server and it drains.
ENTRYPOINT ["modelserve", "serve"]
