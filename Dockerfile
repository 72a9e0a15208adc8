# syntax=docker/dockerfile:1
#
# One image for every taskrt process; the command decides what a container is (docs/deploy.md):
#
#   taskrt api --host 0.0.0.0 --port 8080 --workers 2          (the default command)
#   supervisord -c /etc/taskrt/supervisor/supervisord.conf     (TASKRT_WORKER_PROCESSES workers)
#   taskrt worker --queues default                             (one worker, e.g. on Kubernetes)
#   taskrt scheduler
#   taskrt db upgrade                                          (migrations, once per release)
#
# Build:
#
#   docker build -t taskrt .
#   docker build --build-arg EXTRA_PACKAGES="acme-handlers==1.4.2 ./vendor/other" -t taskrt .
#
# EXTRA_PACKAGES is handed to `pip install` next to taskrt: handler packages from the package
# index (pin them), or paths inside the build context (the example handlers are ./handlers_example).
# Every setting comes from TASKRT_* environment variables at run time; none is baked in.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv holding taskrt, supervisord and the extra handler packages -----------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/taskrt
ENV PATH=/opt/taskrt/bin:$PATH

WORKDIR /src
COPY . .

ARG EXTRA_PACKAGES=""
ARG SUPERVISOR_VERSION=4.3.0
# EXTRA_PACKAGES is a space-separated list of requirements: left unquoted, so that it is split
# into words on purpose.
RUN pip install --no-cache-dir . "supervisor==${SUPERVISOR_VERSION}" ${EXTRA_PACKAGES} \
    && pip check

# --- runtime: the virtualenv, the supervisord configuration, an unprivileged user -------------
FROM ${PYTHON_IMAGE} AS runtime

ARG UID=10001
RUN groupadd --system --gid "${UID}" taskrt \
    && useradd --system --no-log-init --uid "${UID}" --gid taskrt \
        --home-dir /home/taskrt --create-home --shell /usr/sbin/nologin taskrt

COPY --from=build /opt/taskrt /opt/taskrt
COPY supervisor/ /etc/taskrt/supervisor/
COPY --chmod=0755 config/docker/healthcheck.py /usr/local/bin/taskrt-healthcheck

# TASKRT_WORKER_PROCESSES and TASKRT_SUPERVISOR_PROGRAMS are read by supervisord (worker
# containers), TASKRT_HEALTHCHECK by taskrt-healthcheck: api, supervisor or none.
ENV PATH=/opt/taskrt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TASKRT_WORKER_PROCESSES=2 \
    TASKRT_SUPERVISOR_PROGRAMS=programs/worker.conf \
    TASKRT_HEALTHCHECK=api

# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER ${UID}:${UID}
# With no TASKRT_DATABASE_URL, taskrt keeps a SQLite file in the working directory.
WORKDIR /home/taskrt

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["taskrt-healthcheck"]

CMD ["taskrt", "api", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
