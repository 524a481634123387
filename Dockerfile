# The alquery server image. Build: docker build -t alquery:0.1.0 .
# Run:   docker run -p 50051:50051 -p 9464:9464 alquery:0.1.0
# Settings: ALQUERY_* variables (docker run -e ALQUERY_THREADS=8 ...) or
# flags after the image name; see the README's configuration table.
# Shared memory for clients on the same host (off by default): mount one
# directory into the server and the clients, e.g. -v /dev/shm/alquery:/shm
# -e ALQUERY_SHARED_MEMORY_DIR=/shm, owned by uid or gid 10001, mode 0700
# or 0770 (README: Shared memory).

# Build stage: compilers and pip's caches stay here.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler for the compiled loops of the exact k-center greedy
# (server/strategies/_kcenter.c); it stays in this stage.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY client ./client
COPY server ./server
RUN python -m venv /opt/alquery && /opt/alquery/bin/pip install .

# Runtime stage: the virtual environment and a non-root user, nothing else.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/alquery/bin:$PATH \
    ALQUERY_HOST=0.0.0.0 ALQUERY_PORT=50051 ALQUERY_METRICS_PORT=9464 \
    ALQUERY_HEALTH_PORT=8081
RUN groupadd --gid 10001 alquery \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin alquery
COPY --from=build /opt/alquery /opt/alquery
USER 10001:10001
EXPOSE 50051 9464 8081

# gRPC health on the plaintext health port, so the check works with TLS on.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import grpc, os, sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; c = grpc.insecure_channel('127.0.0.1:' + os.environ['ALQUERY_HEALTH_PORT']); r = g.HealthStub(c).Check(h.HealthCheckRequest(), timeout=4); sys.exit(r.status != h.HealthCheckResponse.SERVING)"]

# Exec form: the server is PID 1 and gets SIGTERM itself, then drains
# running requests for ALQUERY_GRACE_SECONDS (30 s) before it exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["alquery", "serve"]
