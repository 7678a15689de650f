"""Write OpenRS as verl's RL parquet files: ``train.parquet`` and ``val.parquet`` (the held-out rows).

    python examples/verl/prepare_openrs.py --out ~/data/openrs [--path local/openrs.jsonl]

Rows: ``data_source``, ``prompt`` (system prompt of METHOD.md §10 + the problem, as chat messages), ``reward_model``
with the ``ground_truth`` answer, ``extra_info``. The split is lgrpo's (:func:`lgrpo.tasks.openrs.load_openrs`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from lgrpo.models import LoadError
from lgrpo.tasks.math_answers import SYSTEM_PROMPT
from lgrpo.tasks.openrs import HUB_ID, load_openrs


def to_verl(rows: list[dict], split: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "data_source": "openrs",
                "prompt": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": row["problem"]},
                ],
                "reward_model": {"style": "rule", "ground_truth": row["answer"]},
                "extra_info": {"split": split, "index": i},
            }
            for i, row in enumerate(rows)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for train.parquet and val.parquet")
    parser.add_argument("--path", default=None, help="local OpenRS copy (.jsonl/.parquet/dataset dir)")
    parser.add_argument("--hub-id", default=HUB_ID)
    parser.add_argument("--eval-size", type=int, default=100)
    args = parser.parse_args()
    try:
        train, held_out = load_openrs(args.path, hub_id=args.hub_id, eval_size=args.eval_size)
    except LoadError as e:  # its hint names lgrpo train's `data.path=`; this script's flag is --path
        raise SystemExit(f"prepare_openrs: {e}\n(here: --path /path/to/openrs.jsonl)") from None
    args.out.mkdir(parents=True, exist_ok=True)
    to_verl(train, "train").to_parquet(args.out / "train.parquet")
    to_verl(held_out, "val").to_parquet(args.out / "val.parquet")
    print(f"wrote {len(train)} training and {len(held_out)} validation rows to {args.out}")


if __name__ == "__main__":
    main()
