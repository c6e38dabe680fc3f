# One image with the three binaries; docker-compose.yml picks the command.
FROM rust:1-bookworm AS build
WORKDIR /src
# Queries are checked against the committed .sqlx/ data, not a database.
ENV SQLX_OFFLINE=true
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/payment-api target/release/recharge-worker target/release/sandbox /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 elife
COPY --from=build /out/ /usr/local/bin/
USER elife
EXPOSE 3000
CMD ["payment-api"]
