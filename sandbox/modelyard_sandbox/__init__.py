"""A real Kubernetes control plane on loopback with simulated GPU nodes (``modelyard sandbox``)."""

from modelyard_sandbox.sandbox import Ports, Sandbox, SandboxStatus

__all__ = ["Ports", "Sandbox", "SandboxStatus"]
