"""Metrics, reports and plots; reads predictions and truth, never trains. May import
``inference`` and every layer below it."""
