"""Local development and test stand-ins for the orchestrator's external services."""
