"""The model registry: MLflow model versions, aliases, and the audited promotion history."""
