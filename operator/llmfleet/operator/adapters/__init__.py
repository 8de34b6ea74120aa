"""Adapters: the operator's only contact with the outside (Kubernetes API, engine /metrics)."""
