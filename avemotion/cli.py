"""Command-line entry point: ``avemotion <command>``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _index(args) -> int:
    from avemotion.datasets import index_dataset, write_index

    settings = {"chunks": args.chunks}
    manifest, quarantine = index_dataset(args.dataset, args.root, settings)
    out = Path(args.out)
    write_index(manifest, quarantine, out / "manifest.parquet", out / "quarantine.csv")
    print(f"{args.dataset}: {len(manifest)} clips, {manifest['speaker'].nunique()} speakers, {len(quarantine)} quarantined")
    print(manifest["label"].replace("", "(no label)").value_counts().to_string())
    for reason, count in quarantine["reason"].value_counts().items():
        print(f"quarantined {count}: {reason}")
    print(f"wrote {out / 'manifest.parquet'} and {out / 'quarantine.csv'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avemotion", description="Audio-visual emotion recognition workflow tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="index a corpus from its file names and metadata (no decoding)")
    index.add_argument("dataset", choices=["crema_d", "enterface", "mafw"])
    index.add_argument("root", help="corpus root directory")
    index.add_argument("--out", default=".", help="folder for manifest.parquet and quarantine.csv")
    index.add_argument("--chunks", type=int, default=64, help="number of preprocessing chunks")
    index.set_defaults(run=_index)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"avemotion: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
