# The runtime stage of the root Dockerfile, fed binaries that were built outside the image (CI builds them once
# for the tests and packs them here; scripts/image-test prepares the context):
#
#   context/
#     usr/local/bin/litecar, usr/local/bin/litecar-operator   static x86_64 binaries
#     etc/ssl/certs/ca-certificates.crt                       CA bundle
#     etc/passwd, etc/group, etc/nsswitch.conf                 from docker/rootfs
#     tmp/ (mode 1777)
FROM scratch
ARG VERSION=dev
ARG SOURCE=https://github.com/litecar/litecar
LABEL org.opencontainers.image.title="litecar" \
      org.opencontainers.image.description="SQLite replication sidecar for Kubernetes (Litestream 0.3 drop-in) and its operator" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY . /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/litecar"]
CMD ["version"]
