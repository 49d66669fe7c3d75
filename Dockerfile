# Clarity's web and worker image (the same image runs both; compose.yaml picks the command).
# git runs the task branches; bubblewrap isolates agents and checks when the container may use it
# (otherwise the local sandbox says so in the log); a non-root user owns the data directory.
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
# gthread workers hold WebSockets and slow clients on threads (32: twenty slow clients starve 8,
# see docs/PERFORMANCE.md); put a buffering proxy such as nginx in front for more.
CMD ["gunicorn", "--workers", "2", "--worker-class", "gthread", "--threads", "32", "--timeout", "60", \
     "--bind", "0.0.0.0:8000", "app:create_app()"]
