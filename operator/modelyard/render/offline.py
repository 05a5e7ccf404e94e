"""``modelyard render``: every child the operator would create for a set of manifests, computed offline.

Offline there is no cluster to ask whether a backend is Ready or its private link verified, so routes are
resolved as the operator would resolve them once every referenced backend in the manifests is Ready and
verified; the data-classification and cluster-policy rules still apply.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.api import ModelDeployment
from modelyard.errors import Infeasible, UserError
from modelyard.manifests import Manifest
from modelyard.planning.spec import plan_deployment

from .common import Manifest as Object
from .model_deployment import render_model_deployment


def render_manifests(manifests: Sequence[Manifest]) -> list[Object]:
    """The children of every object in ``manifests``, in input order."""
    objects: list[Object] = []
    for manifest in manifests:
        obj = manifest.obj
        where = f"{manifest.path}:{manifest.line}: {manifest.ref}"
        if isinstance(obj, ModelDeployment):
            try:
                plan = plan_deployment(obj.spec)
            except (UserError, Infeasible) as exc:
                raise type(exc)(f"{where}: {exc}") from None
            objects += render_model_deployment(obj, plan).all()
    return objects
