"""llmfleet: a Kubernetes operator for fleets of LLM inference servers.

The engine lives in ``llmfleet.engine`` (folder ``engine/``), the operator in
``llmfleet.operator`` (folder ``operator/``: a top-level ``operator`` package
would shadow the standard library's).
"""

__version__ = "0.1.0"
