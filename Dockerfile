# syntax=docker/dockerfile:1
#
# oci2gcp as a container image.
#
#   docker build -t oci2gcp .
#   docker run -d --name oci2gcp --network host \
#     -e OCI_IAM_DOMAIN_URL=... -e GCP_AUDIENCE=... -e OCI2GCP_SERVICE_ACCOUNTS=... oci2gcp
#
# The daemon listens on 127.0.0.1:8181 by default, as on a VM: run it in the
# network namespace of its clients (--network host, or a Kubernetes pod beside
# the application), not behind a published port. See the README, "Running in a
# container". Another Node 24 base: --build-arg NODE_IMAGE=node:24-alpine.

ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: compile TypeScript, then keep only the runtime dependencies -------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Dependencies first, so this layer is reused while only the sources change.
# --ignore-scripts skips this package's own `prepare` (tsc, run below once the
# sources are here); no dependency has an install script (package-lock.json
# records none; a test checks).
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- runtime: node, the compiled daemon and its production dependencies --------
FROM ${NODE_IMAGE} AS runtime
# npm, npx, corepack and yarn are not needed to run the daemon.
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
      /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
# A small young generation keeps the resident size under load below 100 MB (see BENCHMARKS.md).
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-old-space-size=160 --max-semi-space-size=2" \
    OCI2GCP_HOST=127.0.0.1 \
    OCI2GCP_PORT=8181
WORKDIR /app
# Owned by root and read-only for the daemon's user.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
# The image's unprivileged `node` user, by number so that Kubernetes'
# runAsNonRoot can check it without resolving a name.
USER 1000:1000
EXPOSE 8181
# No curl in slim images: node asks /healthz on the configured host and port.
# The script is one JSON string over several lines: Docker joins continued lines
# before it reads the JSON, and the indentation it keeps falls between tokens.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "const e=process.env,h=e.OCI2GCP_HOST||'127.0.0.1', \
    a=h==='0.0.0.0'||h==='::'?'127.0.0.1':h.includes(':')?'['+h+']':h; \
    fetch('http://'+a+':'+(e.OCI2GCP_PORT||8181)+'/healthz',{signal:AbortSignal.timeout(4000)}) \
    .then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/oci2gcp.js"]
CMD ["serve"]
