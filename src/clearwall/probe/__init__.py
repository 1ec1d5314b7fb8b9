"""The audit probe: measure what a network interferes with and reconcile it with the log."""
