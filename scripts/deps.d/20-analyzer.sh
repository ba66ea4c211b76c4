# Analyzer tests: a real registry (docker-registry), htpasswd for its basic-auth test, flock for the shared
# registry's lock, and the upstream SBOM validators (CycloneDX schemas from cyclonedx-python-lib, spdx-tools).
fathom_apt_install docker-registry apache2-utils util-linux
if ! python3 -c 'import cyclonedx.validation.json, spdx_tools, jsonschema' 2>/dev/null; then
  command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || fathom_apt_install python3 python3-pip
  python3 -m pip install -q 'cyclonedx-python-lib[json-validation]' spdx-tools 2>/dev/null \
    || python3 -m pip install -q --break-system-packages 'cyclonedx-python-lib[json-validation]' spdx-tools
fi
