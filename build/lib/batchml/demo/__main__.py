"""``python -m batchml.demo ROOT --start 2024-03-01 --days 30 ...``: write the demo feed."""

from __future__ import annotations

import argparse
import datetime as dt
import logging

from .generator import FORMATS, DemoOptions, generate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m batchml.demo", description=__doc__)
    p.add_argument("root", help="landing zone: a local directory or a URI such as s3://bucket/landing")
    p.add_argument("--start", type=dt.date.fromisoformat, required=True)
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--rows-per-day", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="csv")
    p.add_argument("--drift-from", type=dt.date.fromisoformat)
    p.add_argument("--concept-drift-from", type=dt.date.fromisoformat)
    p.add_argument("--bad-rate", type=float, default=0.0)
    p.add_argument("--bad-file-rate", type=float, default=0.0)
    args = vars(p.parse_args(argv))
    root = args.pop("root")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        options = DemoOptions(**args)
    except ValueError as exc:
        p.error(str(exc))
    s = generate(root, options)
    print(
        f"{s.transactions} transactions ({s.fraud} fraud), {s.chargebacks} chargebacks, "
        f"bad rows {s.bad_rows}, {len(s.bad_files)} bad files, {len(s.files)} files in {s.seconds:.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
