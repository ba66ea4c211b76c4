# API tests: the OpenAPI document is checked by the upstream validator (openapi-spec-validator).
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || fathom_apt_install python3 python3-pip
  python3 -m pip install -q openapi-spec-validator 2>/dev/null \
    || python3 -m pip install -q --break-system-packages openapi-spec-validator
fi
