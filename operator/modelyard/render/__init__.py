"""Renderers: pure functions from a parsed spec (and its plan) to the Kubernetes objects modelyard owns."""
