"""Detectors: per-run features from the store, five small detectors, alerts with a lifecycle, the pager."""
