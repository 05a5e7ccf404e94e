"""A real s3:// download: a ModelDeployment's download Job runs on the sandbox's real node against moto's S3,
its pod's own ServiceAccount token exchanged at moto's STS for the role in ``spec.model.roleArn``, and the
serving pod starts only after the Job completed, on the weights the Job put in the cache claim.

The object store is :mod:`tests.realnode.s3_source`: moto's server on the node address (where pods reach it)
in a process of its own, with IAM enforced, checking the token's signature against the cluster's JWKS (moto
itself does not) and logging which access key made which call. The operator runs in-process, given the
locally built AWS CLI image with ``MODELYARD_AWS_CLI_IMAGE`` (the default names amazon/aws-cli, which no
registry here serves). Everything else is as rendered: the Job, its NetworkPolicy (open to moto's port only,
enforced by kube-router), the serving Deployment (only its CPU request lowered, see serving.fit_to_node).

The cache claim needs a volume: a PersistentVolume pre-bound to the claim the operator will create (its
``claimRef``), a hostPath directory owned by the pods' user, as a provisioner honouring ``fsGroup`` would
hand it out (hostPath volumes ignore fsGroup).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import httpx
import jwt
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from modelyard.render.model_deployment import COMPLETE_MARKER, DOWNLOADER, PERMANENT_FAILURE, RUN_AS_USER
from modelyard.render.web_identity import STS_AUDIENCE
from modelyard_sandbox import images
from modelyard_sandbox.nodeconfig import NODE_IP, NODE_NAME
from tests.conftest import REGION, RealSandbox

from . import s3_source
from .s3_source import S3Source
from .serving import (
    ARCHITECTURE,
    GPU_TYPE,
    GROUP,
    SERVED,
    VERSION,
    _read_or_none,
    _wait,
    create,
    fit_to_node,
    fresh_namespace,
    install_crds,
    kubectl,
    model_server_image,
    operator,
    ready_server_pod,
    real_gpu,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.realnode]

MODEL, STRANGER, OUTSIDER = "tiny", "stranger", "outsider"
ACCOUNT = "123456789012"
PREFIX = "models/qwen2.5-0.5b/"
#: The model directory in the bucket: Qwen2.5-0.5B's config.json (as serving.weights_claim writes it), a
#: stand-in for its weights and a tokenizer file (the test model server reads none of them).
WEIGHTS = {
    "config.json": json.dumps(
        {
            "architectures": ["Qwen2ForCausalLM"],
            "num_hidden_layers": ARCHITECTURE["layers"],
            "num_attention_heads": ARCHITECTURE["attentionHeads"],
            "num_key_value_heads": ARCHITECTURE["kvHeads"],
            "max_position_embeddings": ARCHITECTURE["maxPositionEmbeddings"],
        }
    ).encode(),
    "model.safetensors": secrets.token_bytes(1 << 20),
    "tokenizer/tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
}
JOB_TIMEOUT_S = 180.0
EXCHANGE = "AssumeRoleWithWebIdentity"


@dataclass(frozen=True)
class Store:
    source: S3Source
    bucket: str
    reader: str  #: a role allowed to list the bucket and get its objects
    stranger: str  #: a role allowed to read another bucket only
    probe: str  #: a role the namespace's default ServiceAccount may assume, allowed nothing
    issuer: str


@dataclass(frozen=True)
class Download:
    namespace: str
    job: client.V1Job
    job_pod: client.V1Pod
    job_log: str
    policy: client.V1NetworkPolicy  #: the download NetworkPolicy, read while the Job ran
    deployment: client.V1Deployment
    server: client.V1Pod
    claim_dir: Path
    #: (Job state, Deployment present) each time the test looked while the Job had not completed
    early_looks: list[tuple[str, bool]]


def _role_policy(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
            ],
        }
    )


def _trust_policy(issuer: str, subject: str) -> str:
    """The trust policy IRSA documents: the cluster's OIDC provider, this ServiceAccount, audience STS."""
    provider = issuer.removeprefix("https://")
    condition = {f"{provider}:sub": subject, f"{provider}:aud": STS_AUDIENCE}
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": condition},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture(scope="module")
def store(
    real_sandbox: RealSandbox, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """moto's S3 and STS on the node address, trusting the cluster's service-account keys: a bucket with the
    model directory; roles for the ServiceAccounts of this namespace's models (``reader`` may read the
    bucket, ``stranger`` only another one) and for ``default`` (``probe``, may read nothing); IAM enforced
    from then on."""
    if real_sandbox.env is None:
        pytest.skip("moto is reachable from pods only on the sandbox's node address")
    kubeconfig = real_sandbox.kubeconfig
    jwks = json.loads(kubectl(kubeconfig, "get", "--raw", "/openid/v1/jwks"))
    issuer = json.loads(kubectl(kubeconfig, "get", "--raw", "/.well-known/openid-configuration"))["issuer"]
    with s3_source.s3_source(NODE_IP, jwks, issuer, tmp_path_factory.mktemp("s3")) as source:
        seed = {"endpoint_url": source.url, "region_name": REGION}
        keys = {"aws_access_key_id": "seed", "aws_secret_access_key": "seed"}  # before IAM is enforced
        s3, iam = boto3.client("s3", **seed, **keys), boto3.client("iam", **seed, **keys)
        bucket = f"weights-{secrets.token_hex(4)}"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        for name, data in WEIGHTS.items():
            s3.put_object(Bucket=bucket, Key=PREFIX + name, Body=data)
        roles = {}
        for role, account, readable in (
            ("reader", MODEL, bucket),
            ("stranger", STRANGER, f"other-{bucket}"),
            ("probe", "default", None),
        ):
            name = f"{role}-{secrets.token_hex(3)}"  # moto keeps accounts per process: unique anyway
            trust = _trust_policy(issuer, f"system:serviceaccount:{namespace}:{account}")
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
            if readable:
                iam.put_role_policy(
                    RoleName=name, PolicyName="weights", PolicyDocument=_role_policy(readable)
                )
            roles[role] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
        source.enforce_iam()
        yield Store(source, bucket, roles["reader"], roles["stranger"], roles["probe"], issuer)


@pytest.fixture(scope="module")
def namespace(real_k8s: client.ApiClient) -> Iterator[str]:
    """The module's namespace; the cache volumes made for it (cluster-scoped) go with it."""
    core = client.CoreV1Api(real_k8s)
    with fresh_namespace(real_k8s, "download") as name:
        yield name
    for volume in core.list_persistent_volume().items:
        if volume.metadata.name.startswith(f"{name}-"):
            core.delete_persistent_volume(volume.metadata.name)


@pytest.fixture(scope="module")
def running_operator(real_sandbox: RealSandbox, real_k8s: client.ApiClient, namespace: str) -> Iterator[None]:
    """The operator, with the locally built AWS CLI image, and the real node advertising one L4."""
    install_crds(real_sandbox.kubeconfig)
    aws_cli = images.built_image(images.AWS_CLI).reference
    with (
        real_gpu(real_k8s),
        mock.patch.dict(os.environ, {"MODELYARD_AWS_CLI_IMAGE": aws_cli}),
        operator(real_sandbox.kubeconfig, namespace),
    ):
        yield


def cache_volume(k8s: client.ApiClient, namespace: str, model: str, directory: Path) -> Path:
    """A hostPath PersistentVolume for the cache claim the operator will create for ``model``."""
    directory.mkdir(parents=True)
    os.chown(directory, RUN_AS_USER, RUN_AS_USER)
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{namespace}-{model}"},
        "spec": {
            "capacity": {"storage": "20Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(directory)},
            "claimRef": {"namespace": namespace, "name": f"{model}-weights"},
        },
    }
    client.CoreV1Api(k8s).create_persistent_volume(volume)
    return directory


def s3_model(name: str, bucket: str, role: str, endpoint: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "engine": "vllm",
            "image": model_server_image(),
            "model": {
                "name": SERVED,
                "source": f"s3://{bucket}/{PREFIX}",
                "architecture": ARCHITECTURE,
                "roleArn": role,
                "endpointURL": endpoint,
                "region": REGION,
            },
            "gpu": {"type": GPU_TYPE, "count": 1},
            "serving": {"maxModelLen": 4096},
            "dataClassification": "confidential",
        },
    }


def download_job(k8s: client.ApiClient, namespace: str, model: str) -> client.V1Job | None:
    selector = f"modelyard.dev/modeldeployment={model},app.kubernetes.io/component={DOWNLOADER}"
    jobs = client.BatchV1Api(k8s).list_namespaced_job(namespace, label_selector=selector).items
    return jobs[0] if jobs else None


def job_state(job: client.V1Job | None) -> str:
    for condition in (job.status.conditions or []) if job else []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return "absent" if job is None else "running"


def job_pod(k8s: client.ApiClient, namespace: str, job: client.V1Job) -> tuple[client.V1Pod, str]:
    core = client.CoreV1Api(k8s)
    (pod,) = core.list_namespaced_pod(namespace, label_selector=f"job-name={job.metadata.name}").items
    log = core.read_namespaced_pod_log(pod.metadata.name, namespace, _preload_content=False).data.decode()
    return pod, log


def exit_code(pod: client.V1Pod) -> int:
    (status,) = pod.status.container_statuses
    assert status.state.terminated is not None, status.state
    return int(status.state.terminated.exit_code)


def model_status(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    custom = client.CustomObjectsApi(k8s)
    body: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", name
    )
    return body.get("status") or {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def test_the_store_takes_only_tokens_the_cluster_issued_for_a_role_that_trusts_them(
    store: Store, real_sandbox: RealSandbox, namespace: str
) -> None:
    """The exchange the download relies on is checked, not waved through: a token the API server minted for
    another audience, and one signed by a key not in the cluster's JWKS, are refused with
    InvalidIdentityToken; the API server's token for sts.amazonaws.com is taken by a role whose trust policy
    names its ServiceAccount and refused (AccessDenied) by one that names another. No token is printed."""
    sts = boto3.client("sts", endpoint_url=store.source.url, region_name=REGION)

    def exchange(role: str, token: str) -> str:
        try:
            sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="probe", WebIdentityToken=token)
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "ok"

    def minted(audience: str) -> str:
        args = ["create", "token", "default", "-n", namespace, "--audience", audience, "--duration", "10m"]
        return kubectl(real_sandbox.kubeconfig, *args).strip()

    cluster = minted(STS_AUDIENCE)
    forged = jwt.encode(
        jwt.decode(cluster, options={"verify_signature": False}),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": jwt.get_unverified_header(cluster)["kid"]},
    )
    assert exchange(store.probe, minted("https://example.test")) == "InvalidIdentityToken"
    assert exchange(store.probe, forged) == "InvalidIdentityToken"
    assert exchange(store.reader, cluster) == "AccessDenied"  # its trust policy names the model's account
    assert exchange(store.probe, cluster) == "ok"


def failed_download(
    k8s: client.ApiClient, namespace: str, store: Store, model: str, role: str, claim: Path
) -> tuple[client.V1Job, client.V1Pod, str, dict[str, Any]]:
    """Create an s3:// ModelDeployment with ``role``; its failed Job, the Job's pod and log, and the
    ModelDeployment's status once ModelCached says DownloadFailed."""
    cache_volume(k8s, namespace, model, claim)
    create(k8s, namespace, s3_model(model, store.bucket, role, store.source.url))
    job = _wait(
        lambda: (j := download_job(k8s, namespace, model)) and job_state(j) == "Failed" and j,
        JOB_TIMEOUT_S,
        f"the download Job of {model} to fail",
    )
    status = _wait(
        lambda: (
            (s := model_status(k8s, namespace, model))
            and condition(s, "ModelCached").get("reason") == "DownloadFailed"
            and s
        ),
        60,
        f"{model}'s ModelCached condition to say DownloadFailed",
    )
    pod, log = job_pod(k8s, namespace, job)
    return job, pod, log, status


def assert_failed_at_once(
    k8s: client.ApiClient,
    namespace: str,
    model: str,
    job: client.V1Job,
    pod: client.V1Pod,
    log: str,
    status: dict[str, Any],
) -> None:
    """The pod ran on the real node and exited PERMANENT_FAILURE; the Job failed on it with no retry; the
    ModelDeployment says why and has no serving Deployment."""
    assert pod.spec.node_name == NODE_NAME
    assert exit_code(pod) == PERMANENT_FAILURE, log
    assert job.status.failed == 1, "the Job retried an error no retry fixes"
    assert next(c for c in job.status.conditions if c.type == "Failed").reason == "PodFailurePolicy"
    cached = condition(status, "ModelCached")
    assert cached["status"] == "False" and job.metadata.name in cached["message"]
    assert "PodFailurePolicy" in cached["message"] and status["phase"] == "Failed"
    apps = client.AppsV1Api(k8s)
    assert _read_or_none(apps.read_namespaced_deployment, model, namespace) is None


# --- the counter-check first: it needs the node's CPU the serving pod would take ------------------------
def test_a_role_that_may_not_read_the_bucket_fails_the_download_at_once(
    store: Store,
    running_operator: None,
    real_k8s: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A role that trusts the model's ServiceAccount but whose policy grants another bucket: the exchange
    succeeds, moto refuses the listing with AccessDenied, the download exits PERMANENT_FAILURE, the Job fails
    at once (no retry) and the ModelDeployment says DownloadFailed; no serving Deployment is created."""
    job, pod, log, status = failed_download(
        real_k8s, namespace, store, STRANGER, store.stranger, tmp_path / "claim"
    )
    assert_failed_at_once(real_k8s, namespace, STRANGER, job, pod, log, status)
    assert "(AccessDenied) when calling the ListObjectsV2 operation" in log
    # what moto saw: the pod's token exchanged for the stranger role, then that role's key refused on S3
    subject = f"system:serviceaccount:{namespace}:{STRANGER}"
    (exchange,) = [r for r in store.source.records(EXCHANGE) if r.get("sub") == subject]
    assert exchange["role"] == store.stranger and "refused" not in exchange
    refused = [r for r in store.source.records("request") if r["accessKeyId"] == exchange["accessKeyId"]]
    assert refused and {r["status"] for r in refused} == {403}, refused


def test_a_role_that_does_not_trust_the_models_service_account_fails_the_download_at_once(
    store: Store, running_operator: None, real_k8s: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """The wrong roleArn: the reader role, whose trust policy names another ServiceAccount. STS refuses the
    pod's token with AccessDenied, so no S3 call is even signed; the Job fails at once, DownloadFailed."""
    job, pod, log, status = failed_download(
        real_k8s, namespace, store, OUTSIDER, store.reader, tmp_path / "claim"
    )
    assert_failed_at_once(real_k8s, namespace, OUTSIDER, job, pod, log, status)
    assert "(AccessDenied) when calling the AssumeRoleWithWebIdentity operation" in log
    subject = f"system:serviceaccount:{namespace}:{OUTSIDER}"
    (exchange,) = [r for r in store.source.records(EXCHANGE) if r.get("sub") == subject]
    assert exchange["role"] == store.reader and exchange["refused"].startswith("no statement trusts")


@pytest.fixture(scope="module")
def download(
    store: Store,
    running_operator: None,
    real_k8s: client.ApiClient,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Download:
    """The s3:// ModelDeployment with the reader role: its download Job watched until it completed (and the
    serving Deployment's absence meanwhile), then the serving pod Ready."""
    claim_dir = cache_volume(real_k8s, namespace, MODEL, tmp_path_factory.mktemp("claim") / "volume")
    create(real_k8s, namespace, s3_model(MODEL, store.bucket, store.reader, store.source.url))
    apps, networking = client.AppsV1Api(real_k8s), client.NetworkingV1Api(real_k8s)
    early: list[tuple[str, bool]] = []
    policy = None
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        job = download_job(real_k8s, namespace, MODEL)
        state = job_state(job)
        deployment = _read_or_none(apps.read_namespaced_deployment, MODEL, namespace)
        if state != "Complete":
            early.append((state, deployment is not None))
        if state == "running" and policy is None:
            policy = _read_or_none(networking.read_namespaced_network_policy, f"{MODEL}-download", namespace)
        if state == "Failed" or (state == "Complete" and deployment is not None):
            break
        assert time.monotonic() < deadline, f"the download Job did not complete: {job and job.status}"
        time.sleep(0.25)
    assert job is not None and state == "Complete", job.status if job else None
    pod, log = job_pod(real_k8s, namespace, job)
    fit_to_node(real_k8s, namespace, MODEL)
    server = ready_server_pod(real_k8s, namespace, MODEL)
    assert policy is not None, "the download NetworkPolicy was not there while the Job ran"
    return Download(namespace, job, pod, log, policy, deployment, server, claim_dir, early)


def test_the_download_job_ran_on_the_real_node_with_the_pods_own_web_identity(
    download: Download, store: Store
) -> None:
    target = f"/models/s3/{store.bucket}/{PREFIX.rstrip('/')}"
    assert download.job_pod.spec.node_name == NODE_NAME
    assert exit_code(download.job_pod) == 0, download.job_log
    assert download.job.status.succeeded == 1 and not download.job.status.failed
    assert f"downloaded s3://{store.bucket}/{PREFIX} to {target}" in download.job_log
    (container,) = download.job_pod.spec.containers
    assert container.image == images.built_image(images.AWS_CLI).reference
    assert not any(e.name.startswith("AWS_ACCESS_KEY") for e in container.env or [])
    # moto saw the pod's own token (signature, audience and issuer verified) exchanged for the reader role...
    subject = f"system:serviceaccount:{download.namespace}:{MODEL}"  # the model's own ServiceAccount
    (exchange,) = [r for r in store.source.records(EXCHANGE) if r.get("sub") == subject]
    assert exchange["role"] == store.reader and "refused" not in exchange
    assert exchange["aud"] == [STS_AUDIENCE] and exchange["iss"] == store.issuer
    # ...and every object of the model fetched with the credentials that exchange issued, under enforced IAM
    gets = {
        r["path"].removeprefix(f"/{store.bucket}/{PREFIX}"): r
        for r in store.source.records("request")
        if r["method"] == "GET" and r["path"].startswith(f"/{store.bucket}/{PREFIX}")
    }
    assert set(gets) == set(WEIGHTS)
    assert {(r["accessKeyId"], r["status"]) for r in gets.values()} == {(exchange["accessKeyId"], 200)}


def test_the_download_policy_opened_only_the_stores_port(download: Download, store: Store) -> None:
    """kube-router enforced this policy on the Job's pod, which reached moto through it: DNS and the
    endpoint's port, not 443."""
    port = int(store.source.url.rsplit(":", 1)[1])
    egress = download.policy.spec.egress
    assert download.policy.spec.policy_types == ["Ingress", "Egress"] and not download.policy.spec.ingress
    ports = sorted((p.protocol, p.port) for rule in egress for p in rule.ports or [])
    assert ports == sorted([("UDP", 53), ("TCP", 53), ("TCP", port)]), ports
    assert all(not rule.to for rule in egress if any(p.port == port for p in rule.ports))


def test_the_server_started_after_the_job_completed_on_the_downloaded_weights(
    download: Download, store: Store, real_sandbox: RealSandbox, real_k8s: client.ApiClient
) -> None:
    completed: datetime = download.job.status.completion_time
    created: datetime = download.deployment.metadata.creation_timestamp
    assert completed <= created, f"the serving Deployment ({created}) predates the Job's end ({completed})"
    early = download.early_looks
    assert early and not any(present for _, present in early), early
    status = model_status(real_k8s, download.namespace, MODEL)
    cached = condition(status, "ModelCached")
    assert (cached["status"], cached["reason"]) == ("True", "Downloaded")
    # moto here speaks plain HTTP: the audit says what that would expose on a real network
    assert [f["code"] for f in status.get("findings", [])] == ["PLAINTEXT_MODEL_SOURCE"]

    # the files, on the claim's volume as the Job wrote them (as the pods' user)...
    target = download.claim_dir / "s3" / store.bucket / PREFIX.rstrip("/")
    files = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert files == {*WEIGHTS, COMPLETE_MARKER}
    assert all((target / name).read_bytes() == data for name, data in WEIGHTS.items())
    assert (target / "model.safetensors").stat().st_uid == RUN_AS_USER
    # ...and as the serving pod sees them through the claim
    weights = f"/models/s3/{store.bucket}/{PREFIX.rstrip('/')}"
    pod = ["exec", "-n", download.namespace, download.server.metadata.name, "-c", "engine", "--"]
    listed = kubectl(real_sandbox.kubeconfig, *pod, "ls", "-A", weights).split()
    digest = kubectl(real_sandbox.kubeconfig, *pod, "sha256sum", f"{weights}/model.safetensors").split()[0]
    assert sorted(listed) == sorted([COMPLETE_MARKER, "config.json", "model.safetensors", "tokenizer"])
    assert digest == hashlib.sha256(WEIGHTS["model.safetensors"]).hexdigest()

    # the server is up on the real node and answers (the host reaches the node's pods: kubelet's probes do)
    assert download.server.spec.node_name == NODE_NAME
    answer = httpx.post(
        f"http://{download.server.status.pod_ip}:8000/v1/chat/completions",
        json={"model": SERVED, "messages": [{"role": "user", "content": "from the cache"}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == f"{SERVED} echoes: from the cache"
