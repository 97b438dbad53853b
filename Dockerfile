# syntax=docker/dockerfile:1
# wavoip-recordings: docs/deployment.md explains how to run it.
#
# Node 24 by default: Node 20 is out of support since April 2026 and the AWS SDK warns at start
# on it. Any line package.json's engines admits works: --build-arg NODE_VERSION=22.
ARG NODE_VERSION=24

# Production dependencies only. better-sqlite3 downloads a prebuilt binary when one matches this
# Node and libc, else compiles itself, hence the tool chain, which stays in this stage.
FROM node:${NODE_VERSION}-bookworm-slim AS dependencies
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN chown node:node /app
# Install scripts (better-sqlite3's build, esbuild's check) run as the unprivileged user too.
USER node
COPY --chown=node:node package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:${NODE_VERSION}-bookworm-slim
ENV NODE_ENV=production \
    DATA_DIR=/data \
    PORT=3000
WORKDIR /app
# The code stays owned by root: the service can write only to DATA_DIR (and tsx its cache in /tmp).
COPY --from=dependencies /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY bin ./bin
COPY src ./src
RUN mkdir /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 3000
# Liveness only: /readyz (database reachable) is for a load balancer's readiness check.
# Node itself makes the request: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form, node itself as PID 1 (not npm, not a shell): SIGTERM reaches the service, which
# finishes requests in flight and exits within SHUTDOWN_GRACE + 5 s (Docker waits 10 s by default).
CMD ["node", "bin/wavoip-recordings.js", "serve"]
