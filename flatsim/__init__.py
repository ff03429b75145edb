"""FLATSIM: systematic InSAR campaigns over many frames, resumable, on the batch queue.

- :mod:`flatsim.spec`: the campaign spec (YAML, pydantic);
- :mod:`flatsim.plan`: frames to steps (ingest, pairs, inversion, packaging);
- :mod:`flatsim.steps`: the frame steps (idempotent, atomic, memory-bounded): they
  schedule the shared SAR steps of :mod:`insar` and keep the campaign's state;
- :mod:`flatsim.state`: campaign and step records (the job store's database);
- :mod:`flatsim.monitor`: progress, failures, throughput, estimated completion;
- :mod:`flatsim.report`: the campaign report (HTML and PNGs);
- :mod:`workflows.campaign_tasks`: the Celery tasks and the per-frame chord.
"""

from __future__ import annotations

import json
from pathlib import Path

from flatsim.spec import CampaignSpec, campaign_id, load_spec

__all__ = ["register", "campaign_root", "load_spec", "CampaignSpec", "campaign_id",
           "spec_of"]


def campaign_root(spec: CampaignSpec, cid: str, products_dir: Path | None = None) -> Path:
    """The campaign's products folder: ``spec.out`` or ``<products>/campaigns/<id>``."""
    if spec.out is not None:
        return Path(spec.out).absolute()
    if products_dir is None:
        raise ValueError(f"campaign {spec.name}: no products folder (give the spec an "
                         "'out' or the service's products folder)")
    return Path(products_dir) / "campaigns" / cid


def register(state, spec: CampaignSpec, products_dir: Path | None = None
             ) -> tuple[str, Path, bool]:
    """Record a campaign (idempotent); returns ``(id, products folder, created)``.

    The id is deterministic (name + digest of the spec): registering the same spec again
    finds the same campaign, whose finished steps will be skipped.
    """
    cid = campaign_id(spec)
    root = campaign_root(spec, cid, products_dir)
    root.mkdir(parents=True, exist_ok=True)
    spec_json = spec.model_dump_json()
    (root / "campaign.json").write_text(json.dumps(
        {"id": cid, "spec": json.loads(spec_json)}, indent=2))
    created = state.create_campaign(cid, spec.name, spec_json, str(root), spec.priority)
    return cid, root, created


def spec_of(row: dict) -> CampaignSpec:
    """The spec stored in a campaign row."""
    return CampaignSpec.model_validate_json(row["spec"])
