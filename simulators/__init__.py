"""Simulators that make service inputs with exact ground truth (seeded), apart from the services.

One module per kind of input, used by the tests, the demo, the ``gdm ... simulate``
commands, FLATSIM's simulated frames and the benchmarks:

- :mod:`simulators.opt`: optical images warped by a known displacement field (GDM-OPT).
- :mod:`simulators.sar`: coregistered SLC stacks with deformation, DEM error, atmosphere
  and decorrelation (GDM-SAR, FLATSIM).
- :mod:`simulators.sar_safe`: Sentinel-1 IW SLC SAFE products, orbits and a DEM (SAFE
  ingestion).
- :mod:`simulators.dsm`: stereo views of a known DSM through known RPC cameras (DSM-OPT).
- :mod:`simulators.ifg`: wrapped interferograms with a known unwrapped phase (unwrapping).

They depend on :mod:`gdmio` and :mod:`kernels` only.
"""
