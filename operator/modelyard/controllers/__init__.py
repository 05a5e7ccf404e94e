"""kopf handlers: thin layers that parse, call the pure code, apply and write status. Importing this package
registers them."""

from . import runtime  # noqa: I001 - first: the others read the settings it loads
from . import metrics, model_deployment, provider_binding, route_policy

__all__ = ["metrics", "model_deployment", "provider_binding", "route_policy", "runtime"]
