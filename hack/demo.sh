#!/usr/bin/env bash
# `make demo`: a local control plane with simulated H100 nodes, modelyard's CRDs and every example applied
# through the real API server (admission runs our OpenAPI schemas and CEL rules), shown with kubectl; then
# the capacity plans and the objects the operator creates, computed offline.
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBECONFIG="$PWD/.sandbox/kubeconfig"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if modelyard sandbox status >/dev/null 2>&1; then
  step "sandbox already running"
else
  step "starting the sandbox: etcd, kube-apiserver, controller-manager, scheduler, kwok (4 GPU nodes)"
  modelyard sandbox up --gpu-nodes 4 --gpu-type nvidia-h100-80gb --gpus-per-node 8 --cpu-nodes 1
fi
kubectl get nodes -L nvidia.com/gpu.product,nvidia.com/gpu.count

step "installing the CRDs"
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established crd -l app.kubernetes.io/part-of=modelyard --timeout=60s

step "applying examples/"
kubectl apply --server-side -f examples/
kubectl get modelyard -o wide

step "the API server rejects what the schema forbids (replicas and autoscaling together)"
kubectl apply --dry-run=server -f - <<'YAML' || true
apiVersion: modelyard.dev/v1alpha1
kind: ModelDeployment
metadata: {name: broken}
spec:
  model: {name: x, source: "hf://meta-llama/Llama-3.1-8B-Instruct"}
  gpu: {type: nvidia-h100-80gb}
  replicas: 2
  autoscaling: {maxReplicas: 4}
YAML

step "capacity plans"
modelyard plan -f examples/

step "a model that cannot fit is refused with the numbers"
modelyard plan --model meta-llama/Llama-3.1-405B-Instruct --gpu nvidia-l4 || true

step "what the operator creates for the examples (modelyard render -f examples/ | kubectl apply --dry-run=server)"
modelyard render -f examples/ | kubectl apply --dry-run=server -f -

printf '\nThe sandbox keeps running: KUBECONFIG=%s kubectl get modelyard\nStop it with: make sandbox-down\n' \
  "$KUBECONFIG"
