# The modelyard operator image: ghcr.io/modelyard/modelyard:<version>, the Helm chart's default image
# (charts/modelyard/values.yaml: image.repository; the tag defaults to the chart's appVersion).
#   docker build -t ghcr.io/modelyard/modelyard:0.1.0 .

# --- build: the wheel, from the same pyproject.toml CI tests ---------------------------------------------
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m build --wheel --outdir /dist

# --- runtime: the wheel and its dependencies in a virtualenv, nothing else ------------------------------
FROM python:3.11-slim-bookworm AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="modelyard" \
      org.opencontainers.image.description="Kubernetes operator for enterprise LLM deployments" \
      org.opencontainers.image.source="https://github.com/modelyard/modelyard" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      dev.modelyard.image.repository="ghcr.io/modelyard/modelyard"
ENV VIRTUAL_ENV=/opt/modelyard \
    PATH=/opt/modelyard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /dist/*.whl /tmp/wheels/
RUN python -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 modelyard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin modelyard
# Numeric, so runAsNonRoot can verify it without reading /etc/passwd (the chart runs it as 10001 too).
USER 10001:10001
# Health (kopf /healthz) and Prometheus metrics.
EXPOSE 8080 8081
ENTRYPOINT ["modelyard"]
CMD ["run", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
