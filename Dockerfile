# sluice:dev: the Sluice CLI (sidecar proxy, init-iptables, development CA) compiled to JavaScript.
#   docker build -t sluice:dev .        (or: podman build / buildah bud)
# See images/README.md. The cluster tool builds it with a locally made base:
#   --build-arg BASE_IMAGE=localhost/sluice-node-base:24-bookworm-slim --pull=never
ARG BASE_IMAGE=docker.io/library/node:24-bookworm-slim

# ---- build: TypeScript -> dist/ ----
FROM ${BASE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Behind a TLS-intercepting proxy, give npm its CA bundle as a build secret:
#   --secret id=npm-ca,src=/path/to/ca-bundle.crt   (docker buildx, podman and buildah alike)
RUN --mount=type=secret,id=npm-ca \
    if [ -s /run/secrets/npm-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm-ca; fi \
 && npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin bin
COPY cli cli
COPY lib lib
COPY protocol protocol
COPY io io
COPY pki pki
COPY mesh-model mesh-model
COPY sidecar sidecar
COPY controller controller
COPY injector injector
# bin/sluice.js runs the .ts sources; the image runs the compiled ones through the same path.
RUN npm run build -- --sourceMap false \
 && mkdir -p dist/bin \
 && sed 's#\.\./cli/main\.ts#../cli/main.js#' bin/sluice.js > dist/bin/sluice.js \
 && grep -q "cli/main.js" dist/bin/sluice.js

# ---- production dependencies only ----
FROM ${BASE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npm-ca \
    if [ -s /run/secrets/npm-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm-ca; fi \
 && npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime ----
FROM ${BASE_IMAGE}
# iptables/iproute2: `sluice init-iptables` (init container) programs the pod's nat table.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# uid/gid 1337: the proxy's identity, which the capture rules exempt from redirection.
RUN groupadd --gid 1337 sluice \
 && useradd --uid 1337 --gid 1337 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sluice
WORKDIR /app
ENV NODE_ENV=production
COPY package.json ./
COPY --from=deps /app/node_modules node_modules
COPY --from=build /app/dist ./
USER 1337:1337
ENTRYPOINT ["node", "/app/bin/sluice.js"]
CMD ["--help"]
