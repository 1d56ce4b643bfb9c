"""Observability: structured logs (audit events, operator messages)."""
