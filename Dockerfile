# syntax=docker/dockerfile:1.7
# One image for the three shipped binaries: projection-update-worker,
# run-lifecycle-worker and the orchestrator CLI (loadgen, the benchmark and
# load tool, is a workspace member but is never built into the image). The container's command picks
# one (the ECS task definitions in infra/ pass the worker's name).
#
#   docker build -t metric-orchestrator .
#   docker run --rm -e DATABASE_URL=... metric-orchestrator projection-update-worker

# ---- build ----------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY core/Cargo.toml core/Cargo.toml
COPY workers/orchestrator/Cargo.toml workers/orchestrator/Cargo.toml
COPY workers/projection-update-worker/Cargo.toml workers/projection-update-worker/Cargo.toml
COPY workers/run-lifecycle-worker/Cargo.toml workers/run-lifecycle-worker/Cargo.toml
COPY workers/loadgen/Cargo.toml workers/loadgen/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
RUN mkdir -p core/src workers/orchestrator/src workers/projection-update-worker/src \
        workers/run-lifecycle-worker/src workers/loadgen/src tests/support tests/it \
 && echo '' > core/src/lib.rs && echo '' > tests/support/lib.rs && echo 'fn main() {}' > tests/it/main.rs \
 && for b in orchestrator projection-update-worker run-lifecycle-worker loadgen; do echo 'fn main() {}' > workers/$b/src/main.rs; done \
 && cargo build --release --locked --bins -p orchestrator -p projection-update-worker -p run-lifecycle-worker \
 && rm -rf core/src workers/*/src
COPY core core
COPY migrations migrations
COPY workers workers
# Touch so cargo sees the real sources as newer than the placeholders.
# Debug information is split off into /out/<binary>.debug (workers/split-debug.sh):
# the runtime image gets the stripped binaries; the `debug-symbols` stage
# below exports the .debug files for reading crashes.
RUN find core workers -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bins -p orchestrator -p projection-update-worker -p run-lifecycle-worker \
 && workers/split-debug.sh /out target/release/orchestrator target/release/projection-update-worker \
        target/release/run-lifecycle-worker \
 && mkdir /symbols && mv /out/*.debug /symbols/

# ---- debug symbols (not shipped) --------------------------------------------
#   docker build --target debug-symbols --output type=local,dest=symbols .
FROM scratch AS debug-symbols
COPY --from=build /symbols/ /

# ---- runtime (the default target) ---------------------------------------------
# distroless/cc: glibc and CA certificates (TLS to AWS and PostgreSQL), no
# shell, no package manager; "nonroot" is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# Amazon RDS's CA bundle (every region's roots), which the Terraform's
# DATABASE_URL names: sslmode=verify-full&sslrootcert=<this path>
# (docs/operations.md, "TLS to PostgreSQL").
ADD --chmod=0444 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
USER nonroot:nonroot
ENV LOG_FORMAT=json OPS_ADDR=0.0.0.0:9090
EXPOSE 9090
# The binaries are on PATH; the command names one of them.
ENTRYPOINT []
CMD ["projection-update-worker"]
