"""llmfleet-router: one OpenAI endpoint in front of every engine pod of the fleet (no torch here)."""
