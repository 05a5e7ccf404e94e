#!/usr/bin/env bash
# `make demo`: a local control plane with simulated H100 nodes and one real node, modelyard's CRDs, local
# clouds (moto's server for AWS, the tests' HTTPS fake for Azure) seeded so that the example ProviderBindings
# verify, the operator, and every example applied through the real API server (admission runs our OpenAPI
# schemas and CEL rules); then the result as kubectl shows it, the capacity plans, and at the end a model
# server and a LiteLLM gateway running on the real node, answering a chat completion.
# The Python half is hack/demo.py. MODELYARD_DEMO_DIR: another sandbox directory (default .sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${MODELYARD_DEMO_DIR:-.sandbox}")
export KUBECONFIG="$dir/kubeconfig"
NAMESPACE=tiny  # where the model server and the gateway that really run go
OLLAMA_NAMESPACE=prototype  # engine: ollama and its gateway, as in docs/lifecycle.md

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
running() { [[ -f "$dir/$1.pid" ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }
stop() { if running "$1"; then kill "$(cat "$dir/$1.pid")"; fi; rm -f "$dir/$1.pid"; }

if modelyard sandbox status --dir "$dir" >/dev/null 2>&1; then
  step "sandbox already running"
else
  step "starting the sandbox: etcd, kube-apiserver, controller-manager, scheduler, kwok (6 nodes of 8 H100s: the examples take 43 GPUs), a real node and the LeaderWorkerSet controller (the multi-node examples)"
  modelyard sandbox up --dir "$dir" --gpu-nodes 6 --gpu-type nvidia-h100-80gb --gpus-per-node 8 --lws
fi
kubectl get nodes -L nvidia.com/gpu.product,nvidia.com/gpu.count

step "installing the CRDs"
kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established crd -l app.kubernetes.io/part-of=modelyard --timeout=60s

step "local clouds for the ProviderBindings: AWS is moto's server, Azure a local HTTPS fake of Entra ID and ARM"
if running moto && running azure-fake; then
  echo "already running (moto pid $(cat "$dir/moto.pid"), Azure fake pid $(cat "$dir/azure-fake.pid"))"
  fresh_clouds=0
else
  stop moto
  stop azure-fake
  rm -rf "$dir/clouds"
  for cloud in aws:moto azure:azure-fake; do
    nohup python hack/demo.py cloud "${cloud%%:*}" "$dir" > "$dir/${cloud#*:}.log" 2>&1 &
    echo $! > "$dir/${cloud#*:}.pid"
  done
  for _ in $(seq 120); do
    [[ -f "$dir/clouds/aws.json" && -f "$dir/clouds/azure.json" ]] && break
    for name in moto azure-fake; do
      running "$name" || { echo "$name did not start:"; cat "$dir/$name.log"; exit 1; }
    done
    sleep 0.5
  done
  fresh_clouds=1
fi
cat "$dir/moto.log" "$dir/azure-fake.log"
echo "private DNS answers for the operator (MODELYARD_HOSTS_FILE, as a VPC's private zone would give them):"
sed 's/^/  /' "$dir/clouds/hosts"

step "starting the operator, pointed at the local clouds (log: $dir/operator.log)"
if running operator && [[ $fresh_clouds == 0 ]]; then
  echo "already running (pid $(cat "$dir/operator.pid"))"
else
  stop operator
  mapfile -t cloud_env < <(python hack/demo.py env "$dir")
  printf '  %s\n' "${cloud_env[@]}"
  nohup env "${cloud_env[@]}" modelyard run --all-namespaces --log-format plain > "$dir/operator.log" 2>&1 &
  echo $! > "$dir/operator.pid"
  echo "pid $!"
fi

step "applying examples/ (the tokens they reference are placeholders; modelyard never reads them)"
kubectl create secret generic hf-token --from-literal=token=hf_placeholder --dry-run=client -o yaml | kubectl apply -f -
kubectl create secret generic ngc-api-key --from-literal=key=nvapi-placeholder --dry-run=client -o yaml \
  | kubectl apply -f -
kubectl apply --server-side --force-conflicts -f examples/

step "waiting for the self-hosted models to become Ready"
kubectl wait --for=jsonpath='{.status.phase}'=Ready modeldeployment --all --timeout=120s
kubectl get modelyard -o wide
kubectl get deployments,jobs,pvc,services,networkpolicies,pdb,hpa -l app.kubernetes.io/part-of=modelyard
kubectl get events --field-selector involvedObject.kind=ModelDeployment --sort-by=.lastTimestamp | tail -n 12

columns='NAME:.metadata.name,CREDENTIALS:.status.conditions[?(@.type=="CredentialsVerified")].reason'
columns+=',PRIVATE:.status.conditions[?(@.type=="PrivateConnectivityVerified")].reason'
columns+=',READY:.status.conditions[?(@.type=="Ready")].reason'
# Each binding verified as its spec stands now (a second `make demo` has just re-applied the example's spec).
verified() {
  for binding in $(kubectl get providerbindings -o name); do
    generation=$(kubectl get "$binding" -o jsonpath='{.metadata.generation}')
    kubectl wait --for=jsonpath='{.status.observedGeneration}'="$generation" "$binding" --timeout=60s >/dev/null
  done
}
step "ProviderBindings, verified against the local clouds exactly as against AWS and Azure"
verified
kubectl get providerbindings -o custom-columns="$columns"
read -r endpoint_id endpoint_dns < <(python hack/demo.py vpc-endpoint "$dir")
example_id=$(kubectl get providerbinding bedrock-eu -o jsonpath='{.spec.bedrock.vpcEndpoint.id}')
cat <<EOF

bedrock-eu names VPC endpoint $example_id, which no account holds: moto picks endpoint ids itself
and cannot be given one. The bedrock-runtime interface endpoint "your account" (moto) has is $endpoint_id
($endpoint_dns);
the demo substitutes that id in the binding, as you would put your own endpoint's id there:
EOF
( set -x; kubectl patch providerbinding bedrock-eu --type merge \
  -p "{\"spec\":{\"bedrock\":{\"vpcEndpoint\":{\"id\":\"$endpoint_id\"}}}}" )
verified
# the clouds' bindings; openrouter (a public API) stays SecretNotFound: the demo creates no key for it, and
# openrouter.ai is not reachable from here
kubectl wait --for=condition=Ready providerbinding/bedrock-eu providerbinding/azure-openai-weu --timeout=60s \
  >/dev/null
kubectl get providerbindings
kubectl get providerbindings -o custom-columns="$columns"
for binding in $(kubectl get providerbindings -o name); do
  kubectl get "$binding" -o jsonpath='{.metadata.name}{"  identity: "}{.status.identity.subject}{" -> "}{.status.identity.principal}{"\n"}{range .status.conditions[?(@.type!="Ready")]}{"  "}{.type}{": "}{.message}{"\n"}{end}{range .status.findings[*]}{"  finding "}{.code}{" ("}{.severity}{")\n"}{end}'
done
cat <<'EOF'
(moto does not implement Bedrock's ListFoundationModels, so bedrock-eu notes its models unverified, a low
finding; it accepts any web identity token without evaluating the role's trust policy, while the Azure fake
holds the token exchange to the federated credential's subject and audience, as Entra ID does.)
EOF

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

step "on the real node: a model server and its LiteLLM gateway, really running (namespace $NAMESPACE)"
echo "the test model server image (make images) takes the vLLM command line modelyard renders and echoes the"
echo "prompt; its serving Deployment's CPU request is lowered to fit the 2-CPU node, nothing else is changed"
python hack/demo.py serve "$NAMESPACE"
kubectl get modelyard,pods -n "$NAMESPACE" -o wide

step "on the real node: Ollama (engine: ollama, CPU) answers with a tiny model through the gateway (namespace $OLLAMA_NAMESPACE)"
echo "the tiny GGUF (llama architecture, random weights, a real vocabulary; tests/realnode/tiny_gguf.py) is put on a"
echo "claim; Ollama, built from its Go module by make images, creates the model from it, loads it, then reports Ready"
python hack/demo.py ollama "$OLLAMA_NAMESPACE"
kubectl get modelyard,pods -n "$OLLAMA_NAMESPACE" -o wide

printf '\nThe sandbox, the clouds and the operator keep running: KUBECONFIG=%s kubectl get modelyard -A\n' "$KUBECONFIG"
printf 'Stop them all with: make sandbox-down\n'
printf 'make demo took %ds\n' "$SECONDS"
