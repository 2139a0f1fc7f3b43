"""Per-turn columns of streamed answers for ``Run.turns``: TTFT, ITL, TPOT, output tokens."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

# stats name -> column of run.turns (one value per streamed turn)
PER_TURN = {
    "turn:ttft": "ttft_ms",
    "turn:tpot": "tpot_ms",
    "turn:output_tokens": "output_tokens",
    "turn:tokens_per_s": "tokens_per_s",
}
COLUMNS = ("ttft_ms", "itl_max_ms", "itl_mean_ms", "tpot_ms", "output_tokens", "tokens_per_s")


def stream_table(samples: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """One row per streamed turn (indexed by ``key``), the ``COLUMNS``; empty when none."""
    rows = samples.loc[samples["turn"].notna() & (samples["kind"] == "stream")]
    if rows.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    single = rows.loc[rows["name"].isin(list(PER_TURN))]
    table = single.groupby([*key, "name"])["latency_ms"].first().unstack("name")
    table = table.rename(columns=PER_TURN)
    itl = rows.loc[rows["name"] == "turn:itl"].groupby(list(key))["latency_ms"]
    table = table.join(pd.DataFrame({"itl_max_ms": itl.max(), "itl_mean_ms": itl.mean()}))
    if "output_tokens" in table:
        table["output_tokens"] = table["output_tokens"].round().astype("Int64")
    return table.reindex(columns=list(COLUMNS))
