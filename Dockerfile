# syntax=docker/dockerfile:1
#
# Flight Recorder: one image for the server (`flightrec serve`: collector + API +
# detectors) and the dashboards (`flightrec ui`). See deploy/README.md.
#
#   docker build -t flightrec .
#   docker run --rm -p 4317:4317 -p 4318:4318 -e FLIGHTREC_API_TOKEN=... flightrec
#
# Layers are ordered for the build cache: dependencies (from pyproject.toml only) first,
# then the source, so editing code does not reinstall chdb, grpcio and friends.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# 1. Dependencies only: this layer is rebuilt only when pyproject.toml changes.
#    (README* is optional; pyproject names it as the long description.)
COPY pyproject.toml README* ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; x = p['optional-dependencies']; print('\\n'.join(d for d in p['dependencies'] + x['cli'] + x['server'] if not d.startswith('flight-recorder')))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# 2. The project itself: the folders setuptools installs under flightrec (tool.setuptools.package-dir).
COPY store ./store
COPY collector ./collector
COPY flightrec ./flightrec
COPY stories ./stories
COPY rollback ./rollback
COPY detectors ./detectors
COPY dashboards ./dashboards
COPY evidence ./evidence
RUN pip install --no-deps . \
 && pip check \
 && flightrec --help >/dev/null \
 && cd / && rm -rf /src

# Run as an unprivileged user; its home holds the WAL and, in embedded mode, chDB data.
RUN groupadd --system --gid 10001 flightrec \
 && useradd --system --uid 10001 --gid flightrec --home-dir /var/lib/flightrec \
        --no-create-home --shell /usr/sbin/nologin flightrec \
 && mkdir -p /var/lib/flightrec \
 && chown flightrec:flightrec /var/lib/flightrec

ENV FLIGHTREC_DATA=/var/lib/flightrec \
    HOME=/var/lib/flightrec
WORKDIR /var/lib/flightrec
USER flightrec:flightrec

# 4317 OTLP/gRPC, 4318 OTLP/HTTP + API, 8501 dashboards (`flightrec ui`).
EXPOSE 4317 4318 8501

# Binding beyond loopback needs FLIGHTREC_API_TOKEN; the server refuses to start without it.
CMD ["flightrec", "serve", "--host", "0.0.0.0"]
