"""CIEST² rapid activations: from an event (area, date, hazard) to maps, at top priority.

An activation is one operator's request "this happened here on that day". It

1. searches the scene providers around the event date (Sentinel-2 through STAC,
   Sentinel-1 through ASF, registered Pléiades deliveries) and chooses, with the pure
   functions :func:`select_s2`, :func:`select_s1` and :func:`select_pleiades`, the
   closest usable pre-event and post-event acquisitions (the operator may override
   any choice by scene identifier);
2. launches the jobs on the ``rapid`` queue (its own workers, so they start before
   any waiting ``ondemand`` or ``batch`` job): GDM-OPT on the Sentinel-2 pair, the
   GDM-SAR co-event interferogram on the Sentinel-1 pair, DSM-OPT on the pre and post
   Pléiades stereo acquisitions (their difference is computed by the bulletin);
3. keeps a bulletin (:mod:`workflows.activation.bulletin`: one HTML page and one PDF page with the
   maps, scale bars, dates, scenes used and processing parameters) up to date as each
   job ends, and an activation log (who, when, what).

Hazard defaults (:data:`HAZARDS`; every value can be overridden per activation):

==========  ======================  ==========  ==========  =========  ==========
hazard      sensors, by priority    days before days after  max cloud  OPT preset
==========  ======================  ==========  ==========  =========  ==========
earthquake  S2, S1, Pléiades        90          30          20 %       etq
volcano     S1, Pléiades, S2        48          24          30 %       etq
landslide   S2, Pléiades            120         45          30 %       slide
==========  ======================  ==========  ==========  =========  ==========

Earthquakes: optical correlation gives the horizontal surface rupture, InSAR the
far field, a DSM difference the vertical offsets. Volcanoes: radar first (clouds and
plumes), then DSM difference (lava volumes). Landslides: optical correlation and DSM
difference (InSAR decorrelates on fast, large motions). The first job launched is the
first sensor of the list that has a usable pair.

Scene rules (the same for every sensor): a scene is usable when its footprint covers
at least :data:`MIN_COVERAGE` of the AOI (and, for Sentinel-2, its cloud cover is at
most the limit). When the event is given as a date without a time, scenes acquired on
that day are refused (they may be before or after the event); give a time
(``2023-02-06T01:17Z``) to use them. Pairs are formed within one acquisition geometry
(Sentinel-2: same MGRS tile and relative orbit; Sentinel-1: same relative orbit and
flight direction), the latest usable scene before the event with the earliest usable one
after it; among geometries, the shortest pair wins.

Sentinel-1: the co-event GDM-SAR job asks for the selected pair by area and dates
(``scenes``: the pre and post acquisition days on the selected track and direction);
the worker fetches the SAFE products, ingests the bursts over the AOI (TOPS
coregistration with ESD) and geocodes the products. An operator may instead hand
coregistered stack files (``slcs``) of the selected dates.

The package, by layer:

- :mod:`~workflows.activation.models`: the request model, hazard defaults, errors;
- :mod:`~workflows.activation.selection`: pure scene selection and the provider search;
- :mod:`~workflows.activation.store`: the SQLAlchemy store of activations, logs, jobs;
- :mod:`~workflows.activation.service`: activating and refreshing (launches the jobs);
- :mod:`~workflows.activation.bulletin`: the HTML/PDF bulletin and its maps;
- :mod:`~workflows.activation.tasks`: the worker's refresh task and job-end hook.

The names below are re-exported here for the front ends (``wps.activation``, ``gdm
activate``).
"""

from workflows.activation.models import (
    HAZARDS,
    LOCAL_OPERATOR,
    MIN_COVERAGE,
    ActivationError,
    ActivationRequest,
    HazardDefaults,
    PairOverride,
)
from workflows.activation.selection import (
    Selection,
    search_and_select,
    select_pleiades,
    select_s1,
    select_s2,
)
from workflows.activation.service import (
    activate,
    bulletin_dir,
    check_operator,
    parse_request,
    refresh_bulletin,
)
from workflows.activation.store import Activation, ActivationStore

__all__ = [
    "HAZARDS", "HazardDefaults", "ActivationRequest", "ActivationError", "PairOverride",
    "Selection", "ActivationStore", "Activation", "select_s2", "select_s1", "select_pleiades",
    "search_and_select", "activate", "refresh_bulletin", "bulletin_dir", "check_operator",
    "parse_request", "LOCAL_OPERATOR", "MIN_COVERAGE",
]
