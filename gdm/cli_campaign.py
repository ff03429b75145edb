"""``gdm campaign``: FLATSIM campaigns (start, status, resume, stop, report)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gdm.common import EXIT_BAD_INPUT, EXIT_INTERNAL, guarded

__all__ = ["campaign"]


def _guard(func, debug: bool = False):
    """Run ``func`` like every ``gdm`` command: bad input exits 2, bugs exit 1.

    An unknown campaign (KeyError from the campaign state) is bad input too.
    """

    def job():
        try:
            return func()
        except KeyError as exc:
            click.echo(f"error: {exc.args[0] if exc.args else exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return guarded(job, debug)


def _state():
    from flatsim.state import get_state
    from workflows.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    return get_state(settings.database_url)


@click.group()
def campaign() -> None:
    """FLATSIM: systematic InSAR time series over many frames, on the batch queue.

    \b
    A campaign spec (YAML) lists frames (or an AOI split into frames), the date range,
    the network rules, the products and a priority. Steps (ingest, pair interferogram
    and unwrapping, chunked frame inversion, packaging) run on Celery workers of the
    batch queue (`gdm worker -Q batch`); finished steps are skipped on resume.
    \b
    Try:
      gdm campaign start spec.yaml          # or --local to run here, without workers
      gdm campaign status                   # every campaign; or: status ID [--json]
      gdm campaign stop ID ; gdm campaign resume ID
      gdm campaign report ID
    """


@campaign.command("start")
@click.argument("spec_file", type=click.Path(path_type=Path))
@click.option("--local", is_flag=True, help="Run every step in this process (no workers).")
@click.option("--memory-limit", help="Override the spec's memory_limit (e.g. 1GB).")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def start_cmd(spec_file: Path, local: bool, memory_limit: str | None, debug: bool) -> None:
    """Validate SPEC_FILE, register the campaign and dispatch its frames."""
    from flatsim import register
    from flatsim.spec import load_spec

    def go() -> None:
        spec = load_spec(spec_file)
        if memory_limit:
            spec = type(spec).model_validate({**spec.model_dump(), "memory_limit": memory_limit})
        if local:
            from flatsim.steps import run_campaign_local
            from workflows.settings import get_settings

            state = _state()
            cid, root, _ = register(state, spec, get_settings().products_dir)
            state.set_campaign_status(cid, "running")
            click.echo(f"campaign {cid}: running locally, products in {root}")
            res = run_campaign_local(state, spec, cid, root)
            click.echo(f"campaign {cid}: {res['status']}")
            if res["status"] != "done":
                sys.exit(EXIT_INTERNAL)
            return
        from workflows.campaign_tasks import start

        cid, created, sent = start(spec)
        verb = "started" if created else "resumed (already registered)"
        click.echo(f"campaign {cid} {verb}: {len(sent)} frame(s) sent to the batch queue")

    _guard(go, debug)


@campaign.command("status")
@click.argument("campaign_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
def status_cmd(campaign_id: str | None, as_json: bool) -> None:
    """Progress per frame, failures, throughput and ETA (all campaigns without ID)."""
    from flatsim.monitor import campaign_status, format_status

    def go() -> None:
        state = _state()
        if campaign_id is None:
            rows = state.campaigns()
            if as_json:
                click.echo(json.dumps([campaign_status(state, r["id"]) for r in rows],
                                      indent=2))
                return
            if not rows:
                click.echo("no campaign")
            for r in rows:
                doc = campaign_status(state, r["id"])
                t = doc["totals"]
                click.echo(f"{r['id']:<32} {doc['status']:<22} {doc['progress'] * 100:5.1f}%  "
                           f"frames {t['frames_done']}/{t['frames']}  "
                           f"pairs {t['pairs_done']} (+{t['pairs_failed']} failed)")
            return
        doc = campaign_status(state, campaign_id)
        click.echo(json.dumps(doc, indent=2) if as_json else format_status(doc))

    _guard(go)


@campaign.command("resume")
@click.argument("campaign_id")
@click.option("--local", is_flag=True, help="Run the remaining steps in this process.")
def resume_cmd(campaign_id: str, local: bool) -> None:
    """Restart a stopped or crashed campaign where it stopped (done steps are skipped)."""

    def go() -> None:
        if local:
            from pathlib import Path as _P

            from flatsim import spec_of
            from flatsim.steps import run_campaign_local

            state = _state()
            row = state.campaign(campaign_id)
            if row is None:
                raise KeyError(f"no campaign {campaign_id!r}")
            state.set_campaign_status(campaign_id, "running")
            state.reset_running(campaign_id)
            res = run_campaign_local(state, spec_of(row), campaign_id, _P(row["out_dir"]))
            click.echo(f"campaign {campaign_id}: {res['status']}")
            return
        from workflows.campaign_tasks import resume

        sent = resume(campaign_id)
        click.echo(f"campaign {campaign_id} resumed: {len(sent)} unfinished frame(s) sent")

    _guard(go)


@campaign.command("stop")
@click.argument("campaign_id")
def stop_cmd(campaign_id: str) -> None:
    """Stop a campaign: queued steps are dropped, running ones finish their step."""

    def go() -> None:
        from workflows.campaign_tasks import stop

        changed = stop(campaign_id)
        click.echo(f"campaign {campaign_id} " + ("stopped" if changed else
                                                  "was not running"))

    _guard(go)


@campaign.command("report")
@click.argument("campaign_id")
def report_cmd(campaign_id: str) -> None:
    """Write the campaign report (HTML + PNGs) and print its path."""

    def go() -> None:
        from flatsim.report import write_report

        state = _state()
        if state.campaign(campaign_id) is None:
            raise KeyError(f"no campaign {campaign_id!r}")
        click.echo(str(write_report(state, campaign_id)))

    _guard(go)
