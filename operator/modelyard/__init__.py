"""modelyard: a Kubernetes operator for enterprise LLM deployments."""

__version__ = "0.1.0"
