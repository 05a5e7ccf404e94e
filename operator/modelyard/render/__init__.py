"""Renderers: pure functions from a parsed spec (and its plan) to the Kubernetes objects modelyard owns.

- :mod:`.common`: labels (and the label keys the controllers' watches select on), the spec hash, and the
  children every renderer builds alike (probe, Service, NetworkPolicy, security contexts, egress rules);
- :mod:`.model_deployment`: a ModelDeployment's children;
- :mod:`.web_identity`: the AWS web identity a pod gets without the EKS webhook;
- :mod:`.identity`: what ProviderBindings ask of the namespace's gateway ServiceAccount and pods;
- :mod:`.routing`: which backends may serve each route (classification and cluster policy);
- :mod:`.targets`: the resolved routes and where each backend is reached;
- :mod:`.litellm`: the LiteLLM proxy's config compiled from them;
- :mod:`.gateway`: the gateway's Kubernetes objects;
- :mod:`.offline`: all of it from manifest files (``modelyard render``); :mod:`.yamlout`: the YAML writer.
"""
