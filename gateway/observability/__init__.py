"""Metrics and access logs: what operators see."""
