# The one Herald image: the `herald` binary with the few glibc libraries it links,
# non-root, nothing else (no shell, no package manager).
#
# The build context is a root filesystem that operator/herald/build-image.sh assembles from
# a `herald` binary (by default `cargo build --release`): the binary, the libraries
# `ldd` lists, /etc/nsswitch.conf (Service names resolve through glibc's built-in
# files + dns), CA certificates and a passwd entry for uid 65532. The script runs
# `buildah bud` on this file (no registry needed); `docker build -f Dockerfile
# <that dir>` works the same. Every component is a subcommand:
# `herald operator`, `herald ingress`, `herald dispatcher` (also the consumer
# Deployments' sidecar), `herald sources`, `herald display`, ...
FROM scratch
COPY . /
ENV PATH=/usr/local/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["--help"]
