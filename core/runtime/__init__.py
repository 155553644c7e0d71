"""The wiring: the composition root (build_app), the orchestrator that runs one iteration, the ports it reaches
the agents through, and health."""
