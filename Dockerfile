# One image for both jobs of the QBO invoice processor (ECS Fargate, scheduled by EventBridge Scheduler).
#
#   docker build -t qbo-invoice-processor:dev .
#   docker run --rm --read-only -e ... qbo-invoice-processor:dev --create-invoices --dry-run
#   (/tmp is a declared VOLUME: Docker and ECS give it a writable volume filled from the image, mode 1777)
#
# BASE_IMAGE: any Debian-like image with python3 >= 3.11 and the venv module. `make image-test` builds
# FROM a base made here from Debian packages (no registry reachable), production uses the official one.
# Secret `pip_ca` (optional): a CA bundle for pip when building behind a TLS-inspecting proxy, e.g.
# `--secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt`. It is mounted for one RUN, never stored.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
WORKDIR /src
# Runtime dependencies come from the packages' pinned metadata, held to the lock by constraints.txt;
# the dev tools listed there are constraints only, so they are not installed.
COPY constraints.txt ./
COPY libs/integrations/ libs/integrations/
COPY jobs/create_invoices/ jobs/create_invoices/
COPY jobs/send_invoices/ jobs/send_invoices/
# Non-editable install into a venv that the final stage copies whole; pip and setuptools are removed
# afterwards (nothing installs at run time), and the console script must start before the layer is kept.
RUN --mount=type=secret,id=pip_ca \
    python3 -m venv /opt/venv \
    && if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
        --constraint constraints.txt \
        ./libs/integrations ./jobs/create_invoices ./jobs/send_invoices \
    && /opt/venv/bin/python -m pip uninstall --yes --disable-pip-version-check pip setuptools \
    && /opt/venv/bin/invoice-processor --help > /dev/null

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="qbo-invoice-processor" \
      org.opencontainers.image.description="Creates and sends QuickBooks Online invoices (two scheduled jobs)"
# /tmp is the only writable path (the task's root filesystem is read-only). ECS mounts the task
# volume "tmp" there: an empty volume is root-owned 0755, so uid 10001 could not write it, UNLESS the
# image declares the path as a VOLUME; then ECS fills the volume from the image's /tmp, mode 1777
# included. So /tmp is prepared 1777 here and declared below (after the last change to it: a build
# discards changes made under a VOLUME path after the VOLUME instruction).
RUN groupadd --gid 10001 invoices \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin invoices \
    && mkdir -p /tmp \
    && chown root:root /tmp \
    && chmod 1777 /tmp
COPY --from=builder /opt/venv /opt/venv
# Read-only root filesystem in ECS: only /tmp is writable (HOME points there), no .pyc writes
# (the venv's bytecode was compiled at install), logs unbuffered as JSON lines for CloudWatch.
ENV PATH="/opt/venv/bin:${PATH}" \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json
VOLUME ["/tmp"]
WORKDIR /tmp
USER 10001:10001
# No default job on purpose: the schedule's command override picks `--create-invoices` or
# `--send-invoices` (plus --dry-run / --period YYYY-MM / --client N). Started without one, the
# entrypoint exits 2 with its usage, which the "task stopped with a non-zero exit" alarm reports.
ENTRYPOINT ["invoice-processor"]
CMD []
