# The rulegate Python distribution (ruleadmin + gateway-agent). Build context: the repo root.
#   docker build -f docker/admin.Dockerfile -t rulegate-python .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway_agent ./gateway_agent
COPY ruleadmin ./ruleadmin
COPY rulegate_dev ./rulegate_dev
RUN pip install . && rm -rf /src \
    && useradd --system --uid 10001 --home-dir /var/lib/rulegate --create-home rulegate

USER rulegate
WORKDIR /var/lib/rulegate
EXPOSE 8081 9901
CMD ["ruleadmin", "serve", "--bind", "0.0.0.0:8081", "--workers", "2"]
