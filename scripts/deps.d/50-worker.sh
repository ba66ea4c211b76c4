# Worker service tests: `promtool check metrics` (Debian package prometheus) validates the /metrics output of
# a running worker; docker-registry and Postgres come from 00-apt.sh and 20-analyzer.sh.
fathom_apt_install prometheus
