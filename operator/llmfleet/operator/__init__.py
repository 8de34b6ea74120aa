"""llmfleet.operator: the kopf operator that reconciles LLMService, AutoscalePolicy and SpotPool."""
