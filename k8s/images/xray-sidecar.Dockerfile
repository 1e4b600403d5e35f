# The proxy image, also used by the iptables init container (hence iptables in it). Built without
# the `console` feature: the per-pod image carries no console or demo.
# docker build -f k8s/images/xray-sidecar.Dockerfile -t ghcr.io/xray-sidecar/xray-sidecar:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p xray-sidecar --no-default-features && strip target/release/xray-sidecar

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/xray-sidecar /usr/local/bin/xray-sidecar
# The proxy's UID: iptables never redirects its traffic. The init container runs as root in the pod.
USER 2500:2500
ENTRYPOINT ["xray-sidecar"]
CMD ["proxy", "--transparent"]
