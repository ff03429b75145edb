"""Step 1: the interferogram network of a stack (pairs, connectivity, gaps)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from gdmcore import InputError
from insar.options import NetworkOptions
from insar.products import pair_name
from kernels.timeseries import network_components, select_pairs

__all__ = ["select_network", "lonely_dates", "network_gaps", "check_connected"]


def select_network(dates: Sequence[dt.date], bperp: np.ndarray | None,
                   opts: NetworkOptions) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, i earlier, of ``dates`` under ``opts`` (sorted).

    Raises
    ------
    InputError
        On a bad rule, or when no pair satisfies the limits.

    """
    limit = {} if opts.max_bperp is None or bperp is None else \
        {"bperp": np.asarray(bperp, float), "max_bperp": opts.max_bperp}
    try:
        pairs = select_pairs(list(dates), opts.mode, max_days=opts.max_days,
                             neighbours=opts.neighbours, **limit)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(f"pair selection: {exc}") from None
    if not pairs:
        raise InputError("no pair satisfies the network limits (max_days / max_bperp)")
    return sorted((int(i), int(j)) for i, j in pairs)


def lonely_dates(dates: Sequence[dt.date], pairs: Sequence[tuple[int, int]]) -> list[str]:
    """ISO dates that are in no pair (the series cannot reach them)."""
    used = {k for p in pairs for k in p}
    return [dates[k].isoformat() for k in range(len(dates)) if k not in used]


def check_connected(dates: Sequence[dt.date], pairs: Sequence[tuple[int, int]]) -> None:
    """Raise :class:`InputError` when a date is in no pair."""
    lonely = lonely_dates(dates, pairs)
    if lonely:
        raise InputError(f"the network cannot be connected: date(s) {', '.join(lonely)} "
                         "are in no pair (relax max_days / max_bperp or add neighbours)")


def network_gaps(dates: Sequence[dt.date], planned: Sequence[tuple[int, int]],
                 available: Sequence[tuple[int, int]]) -> dict:
    """What the network lost: missing pairs, connected components, unbridged gaps.

    ``gaps`` lists the boundaries between consecutive dates that no available pair
    crosses while a planned one did: the series on either side is tied only by the
    NSBAS temporal model there (FLATSIM flags such gaps).
    """
    n = len(dates)
    missing = sorted(set(map(tuple, planned)) - set(map(tuple, available)))
    comps = network_components(n, list(available)) if available else [[k] for k in range(n)]
    isolated = [dates[c[0]].isoformat() for c in comps if len(c) == 1]

    def crossings(pairs: Sequence[tuple[int, int]]) -> np.ndarray:
        cover = np.zeros(max(n - 1, 0), np.int32)
        for i, j in pairs:
            cover[i:j] += 1
        return cover

    had, has = crossings(planned), crossings(available)
    gaps = [{"after": dates[k].isoformat(), "before": dates[k + 1].isoformat()}
            for k in range(n - 1) if has[k] == 0 and had[k] > 0]
    return {"missing_pairs": [pair_name(dates[i], dates[j]) for i, j in missing],
            "components": len(comps), "isolated_dates": isolated, "gaps": gaps,
            "connected": len(comps) == 1}
