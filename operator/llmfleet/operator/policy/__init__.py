"""Cluster-admin rules on what an LLMService may ask for (pure; the handlers apply them)."""

from llmfleet.operator.policy.admission import AdmissionRules, Violation, check_service, host_path_allowed

__all__ = ["AdmissionRules", "Violation", "check_service", "host_path_allowed"]
