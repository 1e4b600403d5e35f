# docker build -f k8s/images/xray-injector.Dockerfile -t ghcr.io/xray-sidecar/xray-injector:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p xray-injector && strip target/release/xray-injector

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/xray-injector /usr/local/bin/xray-injector
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/xray-injector"]
CMD ["serve"]
