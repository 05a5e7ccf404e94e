"""AWS web identity (IRSA) for a pod, rendered explicitly instead of left to the EKS pod identity webhook.

On EKS the webhook (aws/amazon-eks-pod-identity-webhook) mutates every pod whose ServiceAccount carries the
``eks.amazonaws.com/role-arn`` annotation: a projected ServiceAccount token volume ``aws-iam-token`` (audience
``sts.amazonaws.com``) mounted read-only at ``/var/run/secrets/eks.amazonaws.com/serviceaccount``, and env
``AWS_ROLE_ARN`` and ``AWS_WEB_IDENTITY_TOKEN_FILE`` (plus ``AWS_STS_REGIONAL_ENDPOINTS`` and the region when
configured). No other cluster (and no sandbox) runs that webhook, so modelyard renders the same pieces itself:
the AWS SDKs' own web-identity credential provider then exchanges the token at STS
(AssumeRoleWithWebIdentity) on any cluster whose service-account issuer the role trusts.

On EKS the two do not collide. The webhook's handler (pkg/handler/handler.go, ``addEnvToContainer`` and
``getPodSpecPatch``, at 3bf80a3) adds ``AWS_ROLE_ARN``/``AWS_WEB_IDENTITY_TOKEN_FILE`` only to containers that
define neither, a volume mount only when the container has none named ``aws-iam-token``, and the volume only
when the pod has none of that name; ``AWS_STS_REGIONAL_ENDPOINTS`` and the region only when unset. So the
names and the path below are the webhook's: with them a pod it mutates is left as rendered (another volume
name would get a second mount on the same path, which the API server refuses).

Pure: no kopf, no SDK; :mod:`modelyard.cloud.aws` takes :data:`STS_AUDIENCE` from here.
"""

from __future__ import annotations

from typing import Any

#: The audience AWS STS expects in a web-identity token (the IAM OIDC provider's client id).
STS_AUDIENCE = "sts.amazonaws.com"
#: The webhook's volume name, mount path and token file name (see the module docstring).
TOKEN_VOLUME = "aws-iam-token"
TOKEN_MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN_FILE = "token"
#: The token's lifetime: an hour (the webhook defaults to a day). The kubelet renews a projected token at 80 %
#: of its lifetime and the SDK re-reads the file whenever its credentials expire, so a download that runs for
#: hours keeps working; a leaked token is good for an hour at most. 600 s is the API server's minimum.
TOKEN_EXPIRATION_SECONDS = 3600


def token_volume() -> dict[str, Any]:
    """The projected ServiceAccount token volume, audience :data:`STS_AUDIENCE`."""
    token = {"audience": STS_AUDIENCE, "expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": TOKEN_FILE}
    return {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}


def token_mount() -> dict[str, Any]:
    return {"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT_PATH, "readOnly": True}


def web_identity_env(role_arn: str, region: str | None = None) -> list[dict[str, str]]:
    """The env the AWS SDKs and CLI read to assume ``role_arn`` with the mounted token; the region (both
    names, as the webhook sets them: botocore reads AWS_DEFAULT_REGION, the newer SDKs AWS_REGION)."""
    env = [
        {"name": "AWS_ROLE_ARN", "value": role_arn},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{TOKEN_MOUNT_PATH}/{TOKEN_FILE}"},
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
    ]
    return env + region_env(region)


def region_env(region: str | None) -> list[dict[str, str]]:
    if region is None:
        return []
    return [{"name": "AWS_REGION", "value": region}, {"name": "AWS_DEFAULT_REGION", "value": region}]
