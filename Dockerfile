# The alquery server image. Build: docker build -t alquery .
# Run:   docker run -p 50051:50051 -p 9464:9464 alquery
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY client ./client
COPY server ./server
RUN pip install . && useradd --create-home --uid 10001 alquery

USER alquery
EXPOSE 50051 9464

# The gRPC health service answers SERVING once the server is up.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import grpc, sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; ch = grpc.insecure_channel('127.0.0.1:50051'); r = g.HealthStub(ch).Check(h.HealthCheckRequest(), timeout=4); sys.exit(r.status != h.HealthCheckResponse.SERVING)"

ENTRYPOINT ["alquery", "serve"]
CMD ["--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9464"]
