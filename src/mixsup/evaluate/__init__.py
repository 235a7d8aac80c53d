"""Metrics, reports and plots; reads predictions and truth, never trains."""
