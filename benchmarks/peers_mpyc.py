"""The MPyC side of ``benchmarks/peers.py``: one party of a 3-party MPyC computation.

Run by ``peers.py`` as three local processes, ``python peers_mpyc.py -M3 -I<i> --no-log
-B <port> <rows_dir> <task> <mode>``; each party loads its own third of the rows
(``<rows_dir>/<task>-<i>.npy``, written by ``peers.py`` from the same rows Tessera's
providers hold, padded with zero rows to one length), computes with the other two and
prints one JSON line: its party index, the seconds from its first input to the opened
result (connection set-up excluded, as Tessera's network build is) and the result.

Both modes open exactly what Tessera's exact mode releases, the pooled sums of the
statistic's terms (``n, Σx, Σx²`` for mean and variance; ``ZᵀZ`` for ``Z = [1, X, y]``
for the regression); the mean, variance and least-squares fit follow in the clear:

* ``rows``: every party secret-shares its rows (secure fixed-point arrays) and the MPC
  computes the sums itself (``Σx²`` and ``ZᵀZ`` by secure multiplication);
* ``presummed``: every party sums its own rows in the clear and secret-shares only the
  sums, so the MPC is a secure sum (what a Tessera provider's contribution is).

MPyC is semi-honest (no proofs, no ledger): see ``peers.py``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from mpyc.runtime import mpc  # parses MPyC's own options from sys.argv


async def party(rows_dir: Path, task: str, mode: str) -> dict[str, Any]:
    z = np.load(rows_dir / f"{task}-{mpc.pid}.npy")  # this party's rows, [1, x…, (y)] per row
    await mpc.start()
    t0 = time.perf_counter()
    senders = list(range(len(mpc.parties)))
    if mode == "presummed":
        # the sums in fixed point with 32 fraction bits, as integers: exact secure sums
        secint = mpc.SecInt(160)
        x = z[:, 1]
        local = z.T @ z if task == "linreg" else np.array([z[:, 0].sum(), x.sum(), x @ x])
        ints = [round(float(v) * 2**32) for v in np.ravel(local)]
        shared = mpc.input([secint(v) for v in ints], senders=senders)
        totals = [mpc.sum([s[j] for s in shared]) for j in range(len(ints))]
        opened = [v / 2**32 for v in await mpc.output(totals)]
        out = np.array(opened, dtype=float).reshape(np.shape(local))
    else:
        secfxp = mpc.SecFxp(128, 16)
        shared = mpc.input(secfxp.array(z), senders=senders)
        a = mpc.np_vstack(shared)
        if task == "linreg":
            out = np.array(await mpc.output(a.T @ a), dtype=float)
        else:
            x = a[:, 1]
            sums = [mpc.np_sum(a[:, 0]), mpc.np_sum(x), x @ x]  # x @ x: one secure dot product
            out = np.array(await mpc.output(sums), dtype=float)
    seconds = time.perf_counter() - t0
    await mpc.shutdown()
    return {"party": mpc.pid, "seconds": seconds, "sums": out.tolist()}


def main() -> None:
    rows_dir, task, mode = Path(sys.argv[-3]), sys.argv[-2], sys.argv[-1]
    res = mpc.run(party(rows_dir, task, mode))
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
