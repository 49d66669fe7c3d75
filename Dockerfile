# Clarity's web and worker image (the same image runs both; compose.yaml picks the command).
# git runs the task branches; bubblewrap (0.8+) and util-linux's setpriv isolate agents and checks, which
# also needs cgroups: compose runs the worker as root in a privileged container (without that, tasks are
# refused, never run unsandboxed); a non-root user runs the web process and owns the data directory.
FROM python:3.12-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends git bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md app.py ./
COPY clarity ./clarity
COPY github_app ./github_app
COPY jobs ./jobs
COPY runner ./runner
COPY dashboard ./dashboard
COPY forge ./forge
COPY devstack ./devstack
RUN pip install --no-cache-dir . \
 && useradd --create-home --uid 10001 clarity \
 && mkdir -p /data /metrics && chown clarity:clarity /data /metrics

USER clarity
ENV CLARITY_DATA_DIR=/data \
    PROMETHEUS_MULTIPROC_DIR=/metrics \
    PYTHONUNBUFFERED=1
EXPOSE 8000
# gthread workers that read each request whole before a thread serves it (clarity.webserver): slow or
# stalled clients hold no thread and are cut off after 10 s; WebSockets still hold one thread each.
CMD ["gunicorn", "--workers", "2", "--worker-class", "clarity.webserver.BufferedThreadWorker", "--threads", "32", \
     "--timeout", "60", \
     "--bind", "0.0.0.0:8000", "app:create_app()"]
