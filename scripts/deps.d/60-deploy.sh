# Deploy checks (tests/deploy.rs): kubectl renders the kustomize overlays, kubernetes-validate checks the
# objects offline against the Kubernetes schemas, promtool (Debian's prometheus) loads the rules and the
# scrape config; tests/prometheus.rs runs the Prometheus server of the same package against a real fleet.
fathom_apt_install prometheus
if ! command -v kubectl >/dev/null; then
  echo "fathom deploy checks need kubectl: install it from https://kubernetes.io/docs/tasks/tools/ (no Debian package)" >&2
  exit 1
fi
if ! command -v kubernetes-validate >/dev/null; then
  python3 -m pip install -q kubernetes-validate 2>/dev/null \
    || python3 -m pip install -q --break-system-packages kubernetes-validate
fi
