# The proxy image, also used by the iptables init container (hence iptables, both its nft and legacy
# back ends, in it). Built without the `console` feature: the per-pod image carries no console or
# demo. `scripts/images` builds it; by hand, from the repository's root:
#   docker build -f k8s/images/xray-sidecar.Dockerfile -t REGISTRY/xray-sidecar:0.1.0 .
# The binary is compiled in RUST_IMAGE, or with BINARIES=prebuilt taken from the build context's
# root (a directory holding `xray-sidecar` built for Debian bookworm's glibc), which needs no Rust
# image. BASE_IMAGE may be any Debian bookworm image (scripts/images --local-base makes one with
# debootstrap where no registry is reachable).
ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
ARG BINARIES=source

FROM ${RUST_IMAGE} AS source
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p xray-sidecar --no-default-features \
 && mkdir /out && strip -o /out/xray-sidecar target/release/xray-sidecar

FROM scratch AS prebuilt
COPY xray-sidecar /out/xray-sidecar

FROM ${BINARIES} AS binaries

FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && iptables-nft --version && iptables-legacy --version
COPY --from=binaries /out/xray-sidecar /usr/local/bin/xray-sidecar
# The proxy's UID: iptables never redirects its traffic. The init container runs as root in the pod.
USER 2500:2500
ENTRYPOINT ["xray-sidecar"]
CMD ["proxy", "--transparent"]
