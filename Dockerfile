# sshpanel in a container: the Docker socket is mounted from the host, the
# data folder and the host keys live on volumes.
#   docker build -t sshpanel .
#   docker run -d -p 2222:2222 -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v sshpanel-data:/data -v sshpanel-hostkeys:/hostkeys \
#     -e SSHPANEL_INITIAL_ADMIN_KEYS="$(cat ~/.ssh/id_ed25519.pub)" sshpanel
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SSHPANEL_DATA_DIR=/data \
    SSHPANEL_HOST_KEYS_DIR=/hostkeys \
    SSHPANEL_PORT=2222

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sshpanel ./sshpanel
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data sshpanel \
    && mkdir -p /data /hostkeys && chown sshpanel /data /hostkeys

# Not root: the socket's group (--group-add) is all the panel needs.
USER sshpanel
VOLUME ["/data", "/hostkeys"]
EXPOSE 2222
CMD ["sshpanel", "serve"]
