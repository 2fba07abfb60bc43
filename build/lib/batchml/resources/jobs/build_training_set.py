"""spark-submit entrypoint: the training-set stage for one run date (the training cut-off).

    spark-submit jobs/build_training_set.py --run-date 2024-02-15 [--dataset card_transactions] [--env prod]
"""

import sys

from batchml.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("training-set", sys.argv[1:]))
