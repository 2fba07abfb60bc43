"""Nightly batch scoring: champion model, checkpointed chunks, reason codes, review queue, fallback rules."""
