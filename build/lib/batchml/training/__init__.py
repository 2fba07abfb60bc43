"""Training: point-in-time training sets, time-aware splits, search, fit, metrics, MLflow logging."""
