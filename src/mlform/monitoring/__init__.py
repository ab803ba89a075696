"""Monitors: drift, performance, latency and error-rate checks on a deployment, their
history, alerts, and the actions taken on a breach (docs/concepts.md, "Monitors")."""
