"""``gdm activate`` and ``gdm activation list|show``: CIEST² rapid activations.

The caller is identified by an API token (``--token`` or ``$GDM_TOKEN``) like on the
HTTP faces; with no account in the job store the embedded single user (an admin) is
assumed. Only operators and admins may activate (exit status 2 otherwise).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from gdm.common import EXIT_BAD_INPUT

__all__ = ["activate", "activation"]


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _context(token: str | None) -> tuple[Any, Any, Any]:
    from workflows.activation import LOCAL_OPERATOR
    from workflows.jobstore import JobStore
    from workflows.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    if token:
        user = store.user_for_token(token)
        if user is None:
            _fail("the API token is not valid")
    elif store.count_users() == 0:
        user = LOCAL_OPERATOR
    else:
        _fail("accounts exist: give an operator's API token (--token or GDM_TOKEN)")
    return settings, store, user


def _pair(pre: tuple[str, ...], post: tuple[str, ...]) -> dict[str, list[str]] | None:
    if not pre and not post:
        return None
    return {"pre": list(pre), "post": list(post)}


@click.command("activate")
@click.option("--aoi", required=True,
              help="Area in WGS84: 'west,south,east,north', WKT, GeoJSON or a file of one.")
@click.option("--event-date", required=True,
              help="Event date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM:SSZ), UTC.")
@click.option("--hazard", required=True,
              type=click.Choice(["earthquake", "volcano", "landslide"]),
              help="Hazard type: sets sensors, search window and cloud limit.")
@click.option("--title", help="Name of the event (bulletin title).")
@click.option("--sensor", "sensors", multiple=True, type=click.Choice(["s2", "s1", "pleiades"]),
              help="Sensors by priority (repeatable; default: the hazard's).")
@click.option("--pre-days", type=click.IntRange(1, 730), help="Days searched before the event.")
@click.option("--post-days", type=click.IntRange(1, 365), help="Days searched after the event.")
@click.option("--max-cloud", type=click.FloatRange(0, 100), help="Sentinel-2 cloud limit, %.")
@click.option("--s2-pre", help="Override: pre-event Sentinel-2 scene id.")
@click.option("--s2-post", help="Override: post-event Sentinel-2 scene id.")
@click.option("--s1-pre", help="Override: pre-event Sentinel-1 scene id.")
@click.option("--s1-post", help="Override: post-event Sentinel-1 scene id.")
@click.option("--pleiades-pre", multiple=True, help="Override: pre-event Pléiades view ids "
              "(repeat for 2-3 stereo views).")
@click.option("--pleiades-post", multiple=True, help="Override: post-event Pléiades view ids.")
@click.option("--slc", "slcs", multiple=True, help="Coregistered SLC file (URL or upload "
              "name) of the selected Sentinel-1 dates, for the co-event job (repeatable).")
@click.option("--s2-fetch", type=click.Choice(["window", "url"]), default="window",
              show_default=True, help="Hand the job AOI windows (scene cache) or asset URLs.")
@click.option("--token", envvar="GDM_TOKEN", help="API token of an operator ($GDM_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print the activation as JSON.")
def activate(aoi: str, event_date: str, hazard: str, title: str | None,
             sensors: tuple[str, ...], pre_days: int | None, post_days: int | None,
             max_cloud: float | None, s2_pre: str | None, s2_post: str | None,
             s1_pre: str | None, s1_post: str | None, pleiades_pre: tuple[str, ...],
             pleiades_post: tuple[str, ...], slcs: tuple[str, ...], s2_fetch: str,
             token: str | None, as_json: bool) -> None:
    """Activate a CIEST² rapid response: choose scenes, run the jobs on `rapid`, bulletin.

    \b
    Hazard defaults: earthquake S2+S1+Pléiades, -90/+30 days, cloud <= 20 %;
    volcano S1+Pléiades+S2, -48/+24 days, cloud <= 30 %; landslide S2+Pléiades,
    -120/+45 days, cloud <= 30 %.
    \b
    Example:
      gdm activate --aoi 36.5,37.0,37.5,37.6 --event-date 2023-02-06T01:17Z \\
        --hazard earthquake --title "Kahramanmaras"
    """
    from workflows.activation import ActivationError
    from workflows.activation import activate as do_activate

    settings, store, user = _context(token)
    body: dict[str, Any] = {"aoi": aoi, "event_date": event_date, "hazard": hazard,
                            "title": title, "s2_fetch": s2_fetch}
    for key, value in (("sensors", list(sensors) or None), ("pre_days", pre_days),
                       ("post_days", post_days), ("max_cloud", max_cloud),
                       ("slcs", list(slcs) or None)):
        if value is not None:
            body[key] = value
    overrides = {k: v for k, v in (
        ("s2", _pair(tuple(filter(None, [s2_pre])), tuple(filter(None, [s2_post])))),
        ("s1", _pair(tuple(filter(None, [s1_pre])), tuple(filter(None, [s1_post])))),
        ("pleiades", _pair(pleiades_pre, pleiades_post))) if v}
    if overrides:
        body["overrides"] = overrides
    try:
        act = do_activate(body, user, store=store, settings=settings)
    except ActivationError as exc:
        where = f" (activation {exc.activation_id} recorded)" if exc.activation_id else ""
        _fail(exc.message + where)
    if as_json:
        click.echo(json.dumps(act.to_json(), indent=2))
        return
    _print(act, settings)


def _print(act: Any, settings: Any) -> None:
    from workflows.activation import bulletin_dir

    click.echo(f"activation {act.id}: {act.title} ({act.status})")
    for sel in act.selections:
        click.echo(f"  {sel['name']}: {sel['status']}: {sel['reason']}")
    for j in act.jobs:
        click.echo(f"  {j['process']} ({j['role']}): {j.get('job_id') or '-'} {j['status']}")
    click.echo(f"  bulletin: {bulletin_dir(act.id, settings) / 'bulletin.html'}")


@click.group("activation")
def activation() -> None:
    """List and show CIEST² activations (showing one refreshes its bulletin)."""


@activation.command("list")
@click.option("--token", envvar="GDM_TOKEN", help="API token of an operator ($GDM_TOKEN).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
def activation_list(token: str | None, limit: int) -> None:
    """Activations, newest first."""
    from workflows.activation import ActivationError, ActivationStore, check_operator

    _settings, store, user = _context(token)
    try:
        check_operator(user)
    except ActivationError as exc:
        _fail(exc.message)
    for a in ActivationStore(store).list(limit):
        click.echo(f"{a.id}  {a.status:22s} {a.hazard:10s} {a.event_date:20s} "
                   f"{a.created_by:12s} {a.title}")


@activation.command("show")
@click.argument("activation_id")
@click.option("--token", envvar="GDM_TOKEN", help="API token of an operator ($GDM_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print the activation as JSON.")
def activation_show(activation_id: str, token: str | None, as_json: bool) -> None:
    """One activation (its bulletin brought up to date first)."""
    from workflows.activation import ActivationError, check_operator, refresh_bulletin

    settings, store, user = _context(token)
    try:
        check_operator(user)
        act = refresh_bulletin(activation_id, store=store, settings=settings)
    except ActivationError as exc:
        _fail(exc.message)
    if as_json:
        click.echo(json.dumps(act.to_json(), indent=2))
    else:
        _print(act, settings)
