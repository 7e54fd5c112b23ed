# syntax=docker/dockerfile:1
# leasehold and ccsim (the Cloud Controller emulator) in one small non-root image.
#
#   docker build -t leasehold .
#   docker run --rm -p 8080:8080 -e DATABASE_URL=postgres://… leasehold
#
# docker-compose.yml runs this image twice: as leasehold (the default command) and as ccsim.

# The builder and the runtime are both Debian 12 (bookworm), so the glibc the binaries are
# linked against is the one they run on.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: built against stub crates from the manifests and
# the lock file alone, so editing leasehold's sources does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates/cf-metadata/Cargo.toml crates/cf-metadata/
COPY crates/ccsim/Cargo.toml crates/ccsim/
COPY crates/leasehold-bench/Cargo.toml crates/leasehold-bench/
RUN mkdir -p src crates/cf-metadata/src crates/ccsim/src crates/leasehold-bench/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs crates/cf-metadata/src/lib.rs crates/ccsim/src/lib.rs \
    && echo 'fn main() {}' > crates/ccsim/src/main.rs \
    && echo 'fn main() {}' > crates/leasehold-bench/src/main.rs \
    && cargo build --release --locked -p leasehold -p ccsim \
    && rm -rf src crates

# Then the workspace. COPY keeps the files' old modification times, which would let cargo
# take the stubs' build for current, hence the touch.
COPY . .
RUN find src crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p leasehold -p ccsim \
    && mkdir -p /data

# Distroless "cc": glibc, libgcc, CA certificates and tzdata, no shell, user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/leasehold /src/target/release/ccsim /usr/local/bin/
# Without DATABASE_URL leasehold keeps an embedded SQLite database here (one container).
COPY --from=build --chown=65532:65532 /data /data
VOLUME /data
ENV LEASEHOLD_DATA_DIR=/data
USER nonroot:nonroot
# Listening beyond loopback, leasehold refuses to start without authentication: run it with
# LEASEHOLD_AUTH=uaa (and LEASEHOLD_UAA_URL) or =tokens, or LEASEHOLD_INSECURE_NO_AUTH=true.
ENV LEASEHOLD_LISTEN=0.0.0.0:8080
EXPOSE 8080
# Ready means the database answers and the schema is in place (/readyz). No shell or curl
# here, so leasehold probes itself; keep the URL's port in step with LEASEHOLD_LISTEN.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/leasehold", "probe", "--url", "http://127.0.0.1:8080", "--path", "/readyz"]
CMD ["/usr/local/bin/leasehold", "serve"]
