# Multi-stage build of the celeriac binary; the runtime image runs as an unprivileged user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
COPY migrations ./migrations
RUN cargo build --release --locked && strip target/release/celeriac

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin celeriac
COPY --from=build /src/target/release/celeriac /usr/local/bin/celeriac
USER celeriac
ENTRYPOINT ["celeriac"]
CMD ["--help"]
