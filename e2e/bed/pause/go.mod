module llmfleet.local/e2e-bed/pause

go 1.24.0
