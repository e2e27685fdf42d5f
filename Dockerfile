# LLM Trace Hub: `docker compose up --build` (docker-compose.yml), or `docker run` with TRACEHUB_*
# settings. docs/OPERATIONS.md covers keys, TLS, CORS and backups.

# The README's install, in an image with a C compiler: it builds the C reader of OTLP protobuf
# requests (tracehub/collector/_otlpwire.c), which halves the CPU of decoding.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN python3 -m venv /opt/tracehub && /opt/tracehub/bin/pip install --no-cache-dir .

# The runtime image: the virtual environment only, no compiler, a user of its own.
FROM python:3.11-slim
COPY --from=build /opt/tracehub /opt/tracehub
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/tracehub --create-home tracehub
# Every listener on the container's interfaces: the server then refuses the well-known dev-key
# until a real key exists (or TRACEHUB_ALLOW_DEFAULT_KEY_ON_PUBLIC=true, as the compose demo sets).
# Without TRACEHUB_DATABASE_URL the database is SQLite in the volume.
ENV PATH=/opt/tracehub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TRACEHUB_HOST=0.0.0.0 \
    TRACEHUB_DATABASE_URL=sqlite:////var/lib/tracehub/tracehub.db
USER 10001:10001
WORKDIR /var/lib/tracehub
VOLUME /var/lib/tracehub
EXPOSE 8000 4317 4318
# No curl in the slim image: Python's urllib. Over TLS the certificate is not checked: it names the
# public host, and this asks the server in the same container on loopback.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, ssl, urllib.request; tls = bool(os.environ.get('TRACEHUB_TLS_CERT_FILE')); c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE; urllib.request.urlopen(('https' if tls else 'http') + '://127.0.0.1:' + os.environ.get('TRACEHUB_HTTP_PORT', '8000') + '/healthz', timeout=4, context=c if tls else None)"
CMD ["tracehub", "serve"]
