"""The gate: exact histograms, open-model pacing, thresholds, live checks, reports."""
