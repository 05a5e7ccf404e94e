"""A small async Kubernetes API client for the controllers: server-side apply, status, tokens, events."""

from .client import ApiError, Kube, Resource, Unreachable, resource_for

__all__ = ["ApiError", "Kube", "Resource", "Unreachable", "resource_for"]
