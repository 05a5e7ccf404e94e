"""kopf handlers: thin layers that parse, call the pure code, apply and write status. Importing this package
registers them."""

from . import model_deployment, runtime

__all__ = ["model_deployment", "runtime"]
