"""spark-submit entrypoint: run the validation gate for one run date (exit 1 when blocked).

    spark-submit jobs/validate.py --run-date 2024-01-05 [--dataset card_transactions] [--env prod]
"""

import sys

from batchml.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("validate", sys.argv[1:]))
