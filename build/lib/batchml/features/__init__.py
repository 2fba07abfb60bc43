"""Point-in-time features: declared in the dataset config, computed by pure transforms, stored as a
date-partitioned Delta table built one day at a time (``batchml run features --run-date D``)."""
