# litecar: one minimal, non-root image holding `litecar` (the sidecar) and `litecar-operator`.
#
#   docker build -t litecar:dev --build-arg VERSION=$(git describe --always) .
#
# The binaries are linked statically against glibc (crt-static), so the runtime stage is `scratch` plus CA
# certificates, a passwd entry for uid 65532 and an nsswitch.conf: name lookups for object stores use glibc's
# built-in `files` and `dns` sources and need no shared library in the image. The runtime stage is the same as
# docker/runtime.Dockerfile, which CI builds from the binaries it has just built (scripts/image-test).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# An explicit --target keeps crt-static off build scripts and proc macros, which must stay dynamic.
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
# Stripped of line tables and symbol tables: panic messages keep their source location, and the image stays small.
RUN cargo build --release --locked --target x86_64-unknown-linux-gnu --bin litecar --bin litecar-operator \
    && mkdir -p /out/usr/local/bin /out/etc/ssl/certs /out/tmp \
    && for b in litecar litecar-operator; do \
         strip --strip-all -o "/out/usr/local/bin/$b" "target/x86_64-unknown-linux-gnu/release/$b"; \
       done \
    && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
    && cp -r docker/rootfs/. /out/ \
    && chmod 1777 /out/tmp

FROM scratch
ARG VERSION=dev
ARG SOURCE=https://github.com/litecar/litecar
LABEL org.opencontainers.image.title="litecar" \
      org.opencontainers.image.description="SQLite replication sidecar for Kubernetes (Litestream 0.3 drop-in) and its operator" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/litecar"]
CMD ["version"]
