#!/usr/bin/env bash
# `make demo`: a local control plane with simulated H100 nodes, modelyard's CRDs, the operator, and every
# example applied through the real API server (admission runs our OpenAPI schemas and CEL rules); then the
# result as kubectl shows it, the capacity plans, and what the operator creates.
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

step "starting the operator (log: .sandbox/operator.log)"
if [[ -f .sandbox/operator.pid ]] && kill -0 "$(cat .sandbox/operator.pid)" 2>/dev/null; then
  echo "already running (pid $(cat .sandbox/operator.pid))"
else
  nohup modelyard run --all-namespaces --log-format plain > .sandbox/operator.log 2>&1 &
  echo $! > .sandbox/operator.pid
  echo "pid $!"
fi

step "applying examples/ (the tokens they reference are placeholders; modelyard never reads them)"
kubectl create secret generic hf-token --from-literal=token=hf_placeholder --dry-run=client -o yaml | kubectl apply -f -
kubectl create secret generic ngc-api-key --from-literal=key=nvapi-placeholder --dry-run=client -o yaml \
  | kubectl apply -f -
kubectl apply --server-side -f examples/

step "waiting for the self-hosted models to become Ready"
kubectl wait --for=jsonpath='{.status.phase}'=Ready modeldeployment --all --timeout=120s
kubectl get modelyard -o wide
kubectl get deployments,jobs,pvc,services,networkpolicies,pdb,hpa -l app.kubernetes.io/part-of=modelyard
kubectl get events --field-selector involvedObject.kind=ModelDeployment --sort-by=.lastTimestamp | tail -n 12

step "ProviderBindings: identity wired; the cloud checks need the cloud (here they report why they could not run)"
kubectl get providerbindings
kubectl get providerbindings -o custom-columns='NAME:.metadata.name,SUBJECT:.status.identity.subject,CREDENTIALS:.status.conditions[?(@.type=="CredentialsVerified")].reason'

step "RoutePolicies: endpoint and compiled route table (unverified backends are left out: fail closed)"
kubectl wait --for=jsonpath='{.status.endpoint}' routepolicy --all --timeout=60s >/dev/null
for policy in $(kubectl get routepolicies -o name); do
  kubectl get "$policy" -o jsonpath='{.metadata.name}{"  endpoint: "}{.status.endpoint}{"\n"}'
  kubectl get "$policy" -o jsonpath='{range .status.routes[*]}{"  route "}{.model}{"\n    eligible: "}{.eligible}{"\n    rejected: "}{.rejected}{"\n"}{end}'
  name=$(kubectl get "$policy" -o jsonpath='{.metadata.name}')
  echo "  compiled LiteLLM config (ConfigMap $name-gateway-config):"
  kubectl get configmap "$name-gateway-config" -o jsonpath='{.data.config\.yaml}' | sed 's/^/    /'
done

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

printf '\nThe sandbox and the operator keep running: KUBECONFIG=%s kubectl get modelyard\n' "$KUBECONFIG"
printf 'Stop both with: make sandbox-down\n'
