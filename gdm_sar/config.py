"""GDM-SAR job configuration: one pydantic model for the CLI, the service and the tests.

The processing fields are the shared SAR step options (:class:`insar.options.SarOptions`,
also FLATSIM's); a job adds its input stack, output folder and memory budget.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field

from insar.options import SarOptions

__all__ = ["SarConfig"]


class SarConfig(SarOptions):
    """A GDM-SAR job: interferograms, unwrapping and time series of a coregistered stack."""

    model_config = ConfigDict(extra="forbid")

    stack: Path = Field(description="Folder of coregistered SLCs: one complex GeoTIFF "
                        "(CFloat32) per date with YYYYMMDD in its name and the metadata "
                        "ACQUISITION_DATE, WAVELENGTH, PERPENDICULAR_BASELINE, "
                        "INCIDENCE_ANGLE, SLANT_RANGE, HEADING.")
    out: Path = Field(description="Output folder (created; written only when the job "
                      "succeeds).")
    block_mb: int = Field(256, ge=16, le=8192, description="Memory budget (MiB) of one block "
                          "of rows: full-resolution SLC rows read at a time, and pair rasters "
                          "read at a time by the inversion. Peak memory grows with it.")
