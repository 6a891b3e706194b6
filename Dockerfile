# syntax=docker/dockerfile:1
#
# MIT-TTS-Streamer, CPU image: Piper (joe en_US, packaged) + espeak-ng voices.
# No torch: MeloTTS is opt-in (deploy/install_melotts.sh) and not in this image.
#
#   docker build -t mit-tts-streamer .
#   docker run --rm mit-tts-streamer python -m streamer keys create --id my-app
#     (prints a key for the clients and its entry; only the entry goes to the server)
#   docker run --rm -p 8080:8080 -p 8081:8081 \
#     -e TTS_STREAMER_API_KEYS='[{"id": "my-app", "sha256": "<from keys create>"}]' \
#     -e TTS_STREAMER_TOKEN_SECRET="$(openssl rand -hex 32)" mit-tts-streamer
#   (the container listens on 0.0.0.0, so it refuses to start without keys; add
#   -e ... or set security.allow_unauthenticated in your own config to run without)
#   docker run ... -v /srv/voices:/var/lib/mit-tts-streamer/voices:ro   # more Piper voices
#   docker run ... -v /srv/tts.json:/etc/mit-tts-streamer/config.json:ro  # own config
#
# Every native library the server needs ships inside its wheels (libsndfile in
# soundfile, libespeak-ng in espeakng-loader, onnxruntime, lameenc, soxr), except SVOX
# Pico: ttspico is C sources that pip compiles, so gcc is installed for that step and
# removed after it. Kokoro (deploy/install_kokoro.sh, needs npm) is not in this image:
# the server lists it unavailable, with the reason.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A dedicated unprivileged user; its home holds the Piper graph cache (~/.cache).
RUN useradd --system --create-home --home-dir /home/tts --uid 10001 --shell /usr/sbin/nologin tts

WORKDIR /app
COPY . /app
# 1. The server, its dependencies and the cluster extra (no dev/client extras, no torch); gcc only
#    while pip builds ttspico.
# 2. The image's config: the project defaults, logging to stderr only (docker logs),
#    listening on every interface of the container (API keys then required: see
#    above), voices from the volume below; replace it by mounting your own file.
# 3. Fail the build, not the first start, if that config no longer validates.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install '/app[cluster]' \
    && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /etc/mit-tts-streamer /var/lib/mit-tts-streamer/voices \
    && python -c "import json; c = json.load(open('/app/config/default.json')); \
c['server']['log_file'] = None; c['server']['host'] = '0.0.0.0'; c['tts']['voices_dir'] = '/var/lib/mit-tts-streamer/voices'; \
json.dump(c, open('/etc/mit-tts-streamer/config.json', 'w'), indent=2)" \
    && python -c "from streamer.config import load_config; load_config('/etc/mit-tts-streamer/config.json')" \
    && chown -R tts:tts /var/lib/mit-tts-streamer

USER tts
VOLUME ["/var/lib/mit-tts-streamer/voices"]
# REST + browser page + OpenAI API + /metrics on 8080; streaming WebSocket on 8081.
EXPOSE 8080 8081

# Readiness: /health is 200 once the models are loaded (503 before). Python's urllib,
# not curl: the slim image has no curl. The start period covers loading and warm-up.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"]

# The server handles SIGTERM: stops accepting, closes WebSockets with 1001, exits 0
# within server.shutdown_timeout_s (5 s); docker's default 10 s stop timeout covers it.
# With server.drain_timeout_s it drains first (deploy/docker-compose.yml sets both).
STOPSIGNAL SIGTERM
# `python -m streamer` from /app (the working directory) runs the source tree itself,
# so the image works however the package metadata lists its subpackages.
CMD ["python", "-m", "streamer", "--config", "/etc/mit-tts-streamer/config.json"]
