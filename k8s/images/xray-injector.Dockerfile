# The admission webhook's image. `scripts/images` builds it; by hand, from the repository's root:
#   docker build -f k8s/images/xray-injector.Dockerfile -t REGISTRY/xray-injector:0.1.0 .
# As for the sidecar's image, BINARIES=prebuilt takes `xray-injector` from the build context's root
# instead of compiling it in RUST_IMAGE, and BASE_IMAGE may be any image with Debian bookworm's glibc.
ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=source

FROM ${RUST_IMAGE} AS source
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p xray-injector \
 && mkdir /out && strip -o /out/xray-injector target/release/xray-injector

FROM scratch AS prebuilt
COPY xray-injector /out/xray-injector

FROM ${BINARIES} AS binaries

FROM ${BASE_IMAGE}
COPY --from=binaries /out/xray-injector /usr/local/bin/xray-injector
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/xray-injector"]
CMD ["serve"]
