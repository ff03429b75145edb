"""The SAR steps: one library that every scheduler of the project calls.

A gdm-sar job (:mod:`gdm_sar.pipeline`, the CLI and the ``gdm-sar`` process) runs them
one after the other; a FLATSIM campaign (:mod:`flatsim.steps`) runs the same functions
as Celery tasks (ingest, a chord of pairs, inversion), adding only campaign state.

==========================  ===========================================================
module                      step
==========================  ===========================================================
:mod:`insar.options`        option models (shared by the gdm-sar CLI/process and FLATSIM)
:mod:`insar.products`       the one table of product names, units and roles
:mod:`insar.stack`          the coregistered SLC stack convention (reader, checks)
:mod:`insar.ingest`         Sentinel-1 IW SLC SAFE products -> coregistered stack
:mod:`insar.network`        pair network, connectivity, gaps
:mod:`insar.pairs`          interferogram + coherence, filter, unwrap (one pair)
:mod:`insar.corrections`    corrections, screening, loop closure, masks, quality lists
:mod:`insar.troposphere`    weather-model delays (ERA5 pressure levels, GACOS), provider
:mod:`insar.inversion`      reference point, NSBAS inversion, DEM error, quality layers
:mod:`insar.geocode`        radar -> map grids (UTM, WGS84)
==========================  ===========================================================

Layering: services (``gdm_sar``, ``flatsim``) -> ``insar`` -> (``gdmio``, ``kernels``).
"""
