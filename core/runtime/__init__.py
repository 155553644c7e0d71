"""The wiring: the composition root (build_app), the orchestrator that runs one iteration, and health."""
