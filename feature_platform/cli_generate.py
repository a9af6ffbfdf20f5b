"""`feature-platform generate`, and the sample data `run` makes when no raw data is configured."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from feature_platform.cli_common import echo, iso_date, positive
from feature_platform.config import ConfigError

DEFAULT_USERS = 2000
DEFAULT_DAYS = 90
DEFAULT_SEED = 7


def add_generate_command(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="write sample raw data (customers, events, reviews, listings)")
    generation_flags(gen)
    gen.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    gen.add_argument("--format", choices=("parquet", "csv"), default="parquet",
                     help="file format of the written files (default %(default)s)")
    gen.add_argument("--mode", choices=("sample", "btyd"), default="sample",
                     help="sample: the full product's data (profiles, events, reviews, listings); btyd: purchases "
                          "only, customers drawn from the BG/NBD process with spend, the true parameters in "
                          "_truth/btyd.json (a known answer for churn models)")
    gen.set_defaults(handler=cmd_generate)


def generation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=positive, help=f"number of users (default {DEFAULT_USERS})")
    parser.add_argument("--days", type=positive, help=f"days of history (default {DEFAULT_DAYS})")
    parser.add_argument("--end-date", type=iso_date, help="last day with data, YYYY-MM-DD (default yesterday, UTC)")
    parser.add_argument("--seed", type=int, help=f"random seed (default {DEFAULT_SEED})")


def _yesterday() -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def generation_params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "users": args.users or DEFAULT_USERS,
        "days": args.days or DEFAULT_DAYS,
        "end_date": (args.end_date or _yesterday()).isoformat(),
        "seed": DEFAULT_SEED if args.seed is None else args.seed,
    }


def generate_sample(params: dict[str, Any], out: Path, file_format: str = "parquet") -> None:
    from feature_platform.sources.generator import GeneratorConfig, generate

    config = GeneratorConfig(
        users=int(params["users"]), days=int(params["days"]),
        end_date=dt.date.fromisoformat(str(params["end_date"])), seed=int(params["seed"]), file_format=file_format,
    )
    echo(f"generating sample data: {config.users:,} users x {config.days} days ending {config.end_date} (seed {config.seed}) -> {out}")
    summary = generate(config, out, progress=lambda line: echo(f"    {line}"))
    counts = ", ".join(f"{name} {rows:,}" for name, rows in summary.rows.items())
    echo(f"    wrote {counts} in {summary.seconds:.1f} s")


def cmd_generate(args: argparse.Namespace) -> int:
    if args.mode == "btyd":
        from feature_platform.sources.btyd_generator import BtydConfig, generate_btyd

        if args.format != "parquet":
            raise ConfigError("--mode btyd writes Parquet only")
        params = generation_params(args)
        config = BtydConfig(users=int(params["users"]), days=int(params["days"]), seed=int(params["seed"]),
                            end_date=dt.date.fromisoformat(str(params["end_date"])))
        rows = generate_btyd(config, args.out)
        echo(f"wrote {rows['customers']:,} BG/NBD customers with {rows['events']:,} purchases, "
             f"{config.start:%Y-%m-%d} .. {config.end_date}, to {args.out} (true parameters in _truth/btyd.json)")
        return 0
    generate_sample(generation_params(args), args.out, args.format)
    return 0
