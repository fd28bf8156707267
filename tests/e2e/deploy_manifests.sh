#!/usr/bin/env bash
# The container, compose, Kubernetes, Grafana and Prometheus files in deploy/
# hold what they say (the checks are being written).
#   tests/e2e/deploy_manifests.sh BIN_DIR
set -euo pipefail
echo "skip deploy_manifests: checks not written yet"
