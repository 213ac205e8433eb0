# One image for every Persys binary. Each deployment picks the program with its command
# (`gateway`, `scheduler`, `agent`, `analyzer`, `metrics-pipeline`, `reconciler`, `persys-stack`, and the
# `persys` and `dorgu` CLIs), and the browser dashboard the gateway serves; see docs/deploy.md.
#
#   docker build -t persys:dev .
#
# When a service is added, append `--bin <name>` to the cargo line and the name to the install
# line below and to the image description; deploy/compose/Dockerfile.prebuilt lists the same
# binaries.

# The browser dashboard (clients/web): TypeScript clients generated from proto/ by buf (from
# npm), bundled by Vite; served by the gateway from /usr/share/persys/web.
FROM node:22-bookworm-slim AS web
WORKDIR /src/clients/web
COPY clients/web/package.json clients/web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY proto /src/proto
COPY clients/web ./
RUN npm run build

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Persys' own contracts are compiled by protox; the etcd client compiles etcd's with protoc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
RUN cargo build --release --locked --bin gateway --bin persys --bin scheduler --bin agent --bin analyzer --bin metrics-pipeline --bin reconciler --bin dorgu --bin persys-stack \
 && mkdir -p /out \
 && for bin in gateway persys scheduler agent analyzer metrics-pipeline reconciler dorgu persys-stack; do install -m 0755 "target/release/$bin" /out/; done

FROM debian:bookworm-slim
# ca-certificates: TLS to outside services (OTLP collector, managed PostgreSQL, GitHub...).
# Platform traffic uses the cluster CA given in PERSYS_TLS_CA instead.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 persys \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/persys --no-create-home \
      --shell /usr/sbin/nologin persys \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/persys
COPY --from=builder /out/ /usr/local/bin/
COPY --from=web /src/clients/web/dist/ /usr/share/persys/web/
# The gateway serves the dashboard at / on its public port (`--web-root`).
ENV PERSYS_GATEWAY_WEB_ROOT=/usr/share/persys/web
USER 10001:10001
WORKDIR /var/lib/persys
# public gRPC + gRPC-web, internal mTLS gRPC, admin HTTP (/metrics, /healthz) of the gateway
EXPOSE 8080 8443 9090
CMD ["gateway"]

LABEL org.opencontainers.image.title="persys" \
      org.opencontainers.image.description="Persys platform binaries: gateway, scheduler, agent, analyzer, metrics-pipeline, reconciler, persys-stack and the persys and dorgu CLIs" \
      org.opencontainers.image.licenses="Apache-2.0"
