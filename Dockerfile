# syntax=docker/dockerfile:1
# One image per binary, each `FROM scratch` holding only its static binary.
#
#   docker build --target writer -t pod-sidecars/writer:0.1.0 .
#
# Offline (no registry, no `rust` image), `cargo xtask images` builds the
# binaries on the host, lays out the same /out tree in a folder, and runs
#   podman build --build-context build=FOLDER --target writer .
# which replaces the `build` stage below by that folder: the runtime stages
# are the same in both cases. See docs/deploy.md.

ARG RUST_VERSION=1.95

# --- build: static binaries and the per-image file trees -------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# crt-static on the gnu target gives static-pie binaries that run in scratch
# (no musl target needed). The release profile has LTO, codegen-units = 1,
# panic = "abort" and strip: the binary is the whole image.
RUN RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
      -p writer -p reader -p log-aggregator -p adapter -p client
# /out/<bin>/ is the whole root of image <bin>. Every binary is multi-call:
# started as `cat` it is cat, as `sleep` it is sleep (common/src/applets.rs),
# so the lab's `kubectl exec ... -- cat FILE` and `sleep 3600` work without a
# shell. Symlinks cost no bytes; COPY of the tree keeps them as symlinks.
RUN set -eu; \
    for bin in writer reader log-aggregator adapter client; do \
      mkdir -p "/out/$bin/usr/local/bin" "/out/$bin/bin"; \
      cp "target/x86_64-unknown-linux-gnu/release/$bin" "/out/$bin/usr/local/bin/$bin"; \
      ln -s "/usr/local/bin/$bin" "/out/$bin/bin/cat"; \
      ln -s "/usr/local/bin/$bin" "/out/$bin/bin/sleep"; \
    done

# --- runtime stages ---------------------------------------------------------
# What every image shares: the build's labels, PATH for the cat/sleep
# symlinks, and a numeric USER so the kubelet can verify runAsNonRoot without
# /etc/passwd. Each image below adds its binary tree, title and entrypoint.
FROM scratch AS runtime
ARG VERSION=dev REVISION=unknown CREATED=unknown SOURCE=https://github.com/example/pod-sidecars
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/usr/local/bin:/bin
USER 65532:65532

FROM runtime AS writer
LABEL org.opencontainers.image.title="writer" \
      org.opencontainers.image.description="Appends timestamped lines to files (the lab's date loop)"
COPY --from=build /out/writer/ /
ENTRYPOINT ["/usr/local/bin/writer"]

FROM runtime AS reader
LABEL org.opencontainers.image.title="reader" \
      org.opencontainers.image.description="Follows a file like tail -f (the lab's reader)"
COPY --from=build /out/reader/ /
ENTRYPOINT ["/usr/local/bin/reader"]

FROM runtime AS log-aggregator
LABEL org.opencontainers.image.title="log-aggregator" \
      org.opencontainers.image.description="Prints the last lines of several logs under headers (the lab's logging sidecar)"
COPY --from=build /out/log-aggregator/ /
ENTRYPOINT ["/usr/local/bin/log-aggregator"]

FROM runtime AS adapter
LABEL org.opencontainers.image.title="adapter" \
      org.opencontainers.image.description="Follows a log and prints its lines as JSON (the adapter pattern)"
COPY --from=build /out/adapter/ /
ENTRYPOINT ["/usr/local/bin/adapter"]

FROM runtime AS client
LABEL org.opencontainers.image.title="client" \
      org.opencontainers.image.description="Polls an HTTP URL and logs each success (the lab's curl loop)"
COPY --from=build /out/client/ /
ENTRYPOINT ["/usr/local/bin/client"]
