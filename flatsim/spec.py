"""FLATSIM campaign specification: one pydantic model, loaded from YAML.

A campaign is a set of frames (listed one by one, or an area of interest split into
frames per track), a date range, the rules of the interferogram network, the
processing options shared by every frame, the products wanted and a priority.

Example (YAML)::

    name: etna-2023
    start: 2023-01-01
    end: 2024-06-30
    frames:
      - {id: A044_N37, track: 44, pass_direction: ascending, source: simulated}
      - {id: D124_N37, track: 124, pass_direction: descending, source: folder,
         path: /data/stacks/D124_N37}
    network: {mode: nearest, neighbours: 3}
    products: [interferograms, timeseries, velocity, quality, stac]
    memory_limit: 2GB
    priority: 5
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import zlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gdmcore import InputError
from insar.options import NetworkOptions, ProcessingOptions

__all__ = ["CampaignSpec", "FrameSpec", "AoiSpec", "NetworkRules", "ProcessingOptions",
           "ArchiveOptions",
           "SimulationOptions", "load_spec", "parse_bytes", "campaign_id",
           "BASELINE_RSS_BYTES", "PRODUCTS"]

PRODUCTS = ("interferograms", "timeseries", "velocity", "quality", "stac")
"""Products a campaign can deliver per frame (FLATSIM naming)."""

BASELINE_RSS_BYTES = 384 * 2**20
"""Memory of a worker process before it holds any data (Python, NumPy, the loaded Numba
kernels, OR-Tools, Dask, GDAL, and the COG writer's block buffers; measured: 330-370 MB):
subtracted from ``memory_limit`` to size the blocks of a step (a constant, so that the
blocks, and hence the products, do not depend on the state of the process)."""

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$")


def parse_bytes(value: str | int) -> int:
    """``"1GB"``, ``"512 MiB"``, ``"150M"`` or a plain integer of bytes, as bytes.

    Units are binary (1 GB = 2**30 bytes), as memory is.
    """
    if isinstance(value, bool):
        raise ValueError("a memory size must be a number or a string like '1GB'")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"cannot read {value!r} as a memory size (examples: 1GB, 512MB)")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * 1024**power)


class SimulationOptions(BaseModel):
    """How frames with ``source: simulated`` are made (simulators.sar, seeded per frame)."""

    model_config = ConfigDict(extra="forbid")

    dates: int = Field(30, ge=3, le=400, description="Acquisitions per simulated frame.")
    size: int = Field(48, ge=32, le=8192, description="Rows and columns of each "
                      "simulated SLC.")
    interval_days: int = Field(12, ge=1, le=365, description="Days between acquisitions.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Campaign seed; each frame's "
                      "seed is derived from it and the frame id.")
    atmosphere_m: float = Field(0.0015, ge=0, le=0.1, description="Standard deviation of "
                                "each date's turbulent delay (m).")
    topography_m: float = Field(0.0, ge=0, le=8000, description="Relief of the simulated "
                                "terrain (m; heights in the stack's geometry.npz).")
    stratified: bool = Field(False, description="Add a stratified troposphere (layered "
                             "atmosphere changing with season and weather).")


class FrameSpec(BaseModel):
    """One frame: a stretch of one track, processed as one stack."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Frame identifier (letters, digits, '_', '-', '.'), "
                    "unique in the campaign, e.g. A044_N37.", pattern=_ID)
    track: int = Field(description="Relative orbit (track) number.", ge=1, le=175)
    pass_direction: Literal["ascending", "descending"] = Field(
        "ascending", description="Orbit direction of the track.")
    source: Literal["simulated", "folder", "archive"] = Field(
        "simulated", description="Where the frame's SLCs come from: simulated "
        "(simulators.sar, seeded per frame), a folder of coregistered SLCs (stack "
        "convention), or the Sentinel-1 archive (IW SLC products of the track over the "
        "bbox, fetched into the scene cache and ingested: every subswath merged, slices "
        "joined, precise orbits, DEM).")
    path: Path | None = Field(None, description="Folder of the frame's coregistered SLCs "
                              "(required by source 'folder').")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="Frame footprint (min lon, min lat, max lon, max lat): the area "
        "searched in the archive (required by source 'archive'), else informative.")

    @model_validator(mode="after")
    def _check(self) -> FrameSpec:
        if self.source == "folder" and self.path is None:
            raise ValueError(f"frame {self.id}: source 'folder' needs a path")
        if self.source == "simulated" and self.path is not None:
            raise ValueError(f"frame {self.id}: a simulated frame takes no path")
        if self.source == "archive":
            if self.path is not None:
                raise ValueError(f"frame {self.id}: an archive frame takes no path")
            if self.bbox is None:
                raise ValueError(f"frame {self.id}: source 'archive' needs a bbox")
            w, s, e, n = self.bbox
            if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
                raise ValueError(f"frame {self.id}: bbox must be (min lon, min lat, max lon, "
                                 "max lat) with min < max, in degrees")
        return self


class AoiSpec(BaseModel):
    """An area of interest split into frames: one column of frames per track."""

    model_config = ConfigDict(extra="forbid")

    bbox: tuple[float, float, float, float] = Field(
        description="Area (min lon, min lat, max lon, max lat) in degrees WGS84.")
    tracks: list[int] = Field(description="Relative orbits covering the area.",
                              min_length=1, max_length=50)
    pass_direction: Literal["ascending", "descending"] = Field(
        "ascending", description="Orbit direction of the tracks.")
    frame_deg: float = Field(1.0, gt=0.05, le=10, description="Along-track (latitude) "
                             "extent of one frame in degrees.")
    source: Literal["simulated", "folder", "archive"] = Field(
        "simulated", description="Stack source of every frame of the area.")
    root: Path | None = Field(None, description="With source 'folder': the folder holding "
                              "one sub-folder of SLCs per frame id.")

    @field_validator("tracks")
    @classmethod
    def _tracks(cls, v: list[int]) -> list[int]:
        if any(not 1 <= t <= 175 for t in v):
            raise ValueError("tracks are relative orbits 1..175")
        if len(set(v)) != len(v):
            raise ValueError("duplicate track")
        return v

    @model_validator(mode="after")
    def _check(self) -> AoiSpec:
        w, s, e, n = self.bbox
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise ValueError("bbox must be (min lon, min lat, max lon, max lat) with "
                             "min < max, in degrees")
        if self.source == "folder" and self.root is None:
            raise ValueError("aoi with source 'folder' needs a root folder")
        return self

    def frames(self) -> list[FrameSpec]:
        """The frames of the area: per track, bands of ``frame_deg`` latitude, south first."""
        w, s, e, n = self.bbox
        count = max(1, math.ceil((n - s) / self.frame_deg - 1e-9))
        out = []
        p = self.pass_direction[0].upper()
        for track in self.tracks:
            for k in range(count):
                lat0 = s + k * self.frame_deg
                lat1 = min(n, lat0 + self.frame_deg)
                hemi = "N" if lat0 >= 0 else "S"
                fid = f"{p}{track:03d}_{hemi}{abs(lat0):05.2f}".replace(".", "p")
                out.append(FrameSpec(
                    id=fid, track=track, pass_direction=self.pass_direction,
                    source=self.source,
                    path=(self.root / fid) if self.source == "folder" and self.root else None,
                    bbox=(w, lat0, e, lat1)))
        return out


class ArchiveOptions(BaseModel):
    """How frames with ``source: archive`` are fetched and ingested."""

    model_config = ConfigDict(extra="forbid")

    swath: Literal["all", "IW1", "IW2", "IW3"] = Field(
        "all", description="Subswaths ingested: all three merged (a whole frame) or one.")
    polarisation: Literal["VV", "HH"] | None = Field(
        None, description="Polarisation (default VV, else HH).")
    orbit_source: Literal["precise", "auto"] = Field(
        "precise", description="'precise': every date needs a precise (else restituted) "
        "orbit from the orbit provider; 'auto': the annotation's state vectors where the "
        "provider has none.")
    dem: bool = Field(True, description="Fetch the DEM from the DEM provider (Copernicus "
                      "GLO-30, EGM2008 heights converted to ellipsoidal); false: the "
                      "ellipsoid.")
    block_lines: int = Field(512, ge=16, le=8192, description="Burst lines ingested at a "
                             "time (memory).")
    max_products: int = Field(2000, ge=2, le=20000, description="Most products a frame "
                              "may fetch (a guard against a too large search).")


NetworkRules = NetworkOptions
"""Which pairs each frame's network holds: the shared :class:`insar.options.NetworkOptions`."""


class CampaignSpec(BaseModel):
    """A FLATSIM campaign: systematic InSAR time series over many frames."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Campaign name (letters, digits, '_', '-', '.').",
                      pattern=_ID)
    frames: list[FrameSpec] = Field(default_factory=list, max_length=500,
                                    description="Frames, listed one by one.")
    aoi: AoiSpec | None = Field(None, description="Or an area split into frames "
                                "(added to `frames`).")
    start: dt.date = Field(description="First acquisition date kept (ISO 8601, UTC).")
    end: dt.date = Field(description="Last acquisition date kept (ISO 8601, UTC).")
    network: NetworkOptions = Field(default_factory=NetworkOptions,
                                    description="Pair network rules (the SAR steps' "
                                    "network options).")
    processing: ProcessingOptions = Field(default_factory=ProcessingOptions,
                                          description="Interferometric processing options "
                                          "(the SAR steps' options, as gdm-sar's).")
    simulation: SimulationOptions = Field(default_factory=SimulationOptions,
                                          description="Simulated frames (source: simulated).")
    archive: ArchiveOptions = Field(default_factory=ArchiveOptions,
                                    description="Frames from the Sentinel-1 archive "
                                    "(source: archive).")
    products: list[Literal["interferograms", "timeseries", "velocity", "quality", "stac",
                           "flatsim"]] \
        = Field(default_factory=lambda: list(PRODUCTS), min_length=1,
                description="Products delivered per frame (velocity and quality are always "
                "computed; this selects what the catalogue and report list). 'flatsim' "
                "adds FLATSIM-like packages per frame (FLATSIM/TS and FLATSIM/AUX: "
                "displacement series, mean LOS velocity, network misclosure bands, temporal "
                "coherence, mask, lookup tables, LOS vectors, heights, RMS per date and per "
                "interferogram lists, a PNG preview of every raster).")
    priority: int = Field(5, ge=0, le=9, description="Campaign priority (9 highest), "
                          "recorded with the campaign and shown by the monitoring. The "
                          "batch queue is routed, not prioritised per message (brokers "
                          "disagree on message priorities): frames run in dispatch order.")
    memory_limit: str = Field("2GB", description="Memory budget of one step on one worker "
                              "(e.g. '1GB', '512MB'): blocks of SLC rows and inversion "
                              "chunks are sized to stay under it.")
    min_dates: int = Field(5, ge=3, le=400, description="A frame with fewer valid dates "
                           "after dropping broken ones fails.")
    out: Path | None = Field(None, description="Products folder (default: the service's "
                             "products folder / campaigns / <campaign id>).")

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, v: str) -> str:
        n = parse_bytes(v)
        if n < BASELINE_RSS_BYTES + 64 * 2**20:
            raise ValueError(f"memory_limit {v} is below the "
                             f"{(BASELINE_RSS_BYTES + 64 * 2**20) // 2**20} MiB a worker "
                             "needs (its baseline plus 64 MiB of data)")
        if n > 2**44:
            raise ValueError(f"memory_limit {v} is not plausible")
        return v

    @model_validator(mode="after")
    def _check(self) -> CampaignSpec:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        frames = self.all_frames()
        if not frames:
            raise ValueError("a campaign needs frames or an aoi")
        ids = [f.id for f in frames]
        dups = sorted({i for i in ids if ids.count(i) > 1})
        if dups:
            raise ValueError(f"duplicate frame id(s): {', '.join(dups)}")
        if any(f.source == "simulated" for f in frames):
            sim = self.simulation
            last = self.start + dt.timedelta(days=sim.interval_days * (sim.dates - 1))
            if last > self.end:
                raise ValueError(f"simulated frames have {sim.dates} dates every "
                                 f"{sim.interval_days} days from {self.start}, up to {last}, "
                                 f"after the end {self.end}")
        return self

    @property
    def memory_bytes(self) -> int:
        """``memory_limit`` in bytes."""
        return parse_bytes(self.memory_limit)

    def all_frames(self) -> list[FrameSpec]:
        """Listed frames, then those of the AOI."""
        return list(self.frames) + (self.aoi.frames() if self.aoi else [])

    def frame(self, frame_id: str) -> FrameSpec:
        """A frame by id (KeyError otherwise)."""
        for f in self.all_frames():
            if f.id == frame_id:
                return f
        raise KeyError(f"no frame {frame_id!r} in campaign {self.name}")

    def frame_seed(self, frame_id: str) -> int:
        """The simulation seed of a frame: the campaign seed mixed with the frame id."""
        return (self.simulation.seed * 1_000_003 + zlib.crc32(frame_id.encode())) % 2**31


def campaign_id(spec: CampaignSpec) -> str:
    """Deterministic campaign id: the name and a digest of the whole spec."""
    canon = json.dumps(json.loads(spec.model_dump_json()), sort_keys=True)
    return f"{spec.name}-{hashlib.sha256(canon.encode()).hexdigest()[:8]}"


def _error_lines(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "spec"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_spec(source: str | Path | dict) -> CampaignSpec:
    """Read and validate a campaign spec from a YAML file, YAML text or a mapping.

    Raises
    ------
    InputError
        Naming the file and every problem (YAML syntax with its line, unknown or
        invalid fields with their location).

    """
    where = "campaign spec"
    if isinstance(source, dict):
        raw = source
    else:
        text = str(source)
        path = Path(source) if isinstance(source, Path) or "\n" not in text else None
        if path is not None and (isinstance(source, Path) or path.suffix in (".yaml", ".yml")):
            if not path.is_file():
                raise InputError(f"campaign spec not found: {path}")
            where = path.name
            text = path.read_text()
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            raise InputError(f"{where}: not valid YAML{line}: "
                             f"{getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping of fields, got "
                         f"{type(raw).__name__}")
    try:
        return CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{where}: {_error_lines(exc)}") from None
