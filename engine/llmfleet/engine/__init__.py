"""llmfleet.engine: the embedded paged-attention inference engine."""
