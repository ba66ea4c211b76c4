# Image build (scripts/build-image, tests/image.rs): buildah builds deploy/Dockerfile without a Docker daemon,
# skopeo reads the pushed image back, umoci unpacks it; cargo-auditable (pinned, as in deploy/Dockerfile)
# embeds the binary's dependency list. The runtime base comes from `apt-get download` and dpkg-deb.
fathom_apt_install buildah skopeo umoci dpkg git
if ! cargo auditable --version >/dev/null 2>&1; then
  cargo install cargo-auditable --locked --version 0.7.7
fi
