# gatekeeper container image: a static binary on distroless, run as nonroot.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t gatekeeper .
#   docker run -p 5433:5433 -p 8443:8443 -p 127.0.0.1:9090:9090 \
#       -v gatekeeper-data:/var/lib/gatekeeper gatekeeper
#
# Mount your configuration over /etc/gatekeeper/gatekeeper.yaml (the image
# carries configs/container.yaml there) and keep ops.addr on port 9090 for
# the HEALTHCHECK. State (store file, snapshot, certificates, tokens) goes
# to /var/lib/gatekeeper.

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so that a source change reuses this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/gatekeeper ./cmd/gatekeeper \
    && mkdir -p /out/var/lib/gatekeeper

# static-debian12 has CA certificates, tzdata and a nonroot user (65532);
# no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gatekeeper /usr/local/bin/gatekeeper
COPY configs/container.yaml /etc/gatekeeper/gatekeeper.yaml
# The data volume must belong to the user that writes it.
COPY --from=build --chown=65532:65532 /out/var/lib/gatekeeper /var/lib/gatekeeper
USER 65532:65532
WORKDIR /var/lib/gatekeeper
VOLUME ["/etc/gatekeeper", "/var/lib/gatekeeper"]
# desktop (tls listener), admin (HTTPS), ops (/metrics, /healthz, /readyz)
EXPOSE 5433 8443 9090
# distroless has no curl or wget: the binary asks /healthz itself and exits
# 0 on 200, 1 otherwise.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/gatekeeper", "healthcheck", "-url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/gatekeeper"]
CMD ["serve", "-config", "/etc/gatekeeper/gatekeeper.yaml"]
