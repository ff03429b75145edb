"""Scene-search previews: what a job asked by area and dates would process.

The web form and the OGC API call :func:`preview_scenes` before submitting, so a user
sees the scenes (dates, cloud cover, track) that ``{aoi, start, end, ...}`` selects.
Nothing is downloaded; the archive is asked with a short retry policy because a person
is waiting.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gdmcore import InputError
from gdmio.download import RemoteError, RetryPolicy
from gdmio.providers.resolve import SceneRequest, get_provider, search_scenes
from workflows.submit import SubmitError

__all__ = ["preview_scenes", "PREVIEW_POLICY", "PREVIEW_LIMIT"]

PREVIEW_POLICY = RetryPolicy(attempts=2, backoff=0.5, max_backoff=2.0, max_retry_after=5.0,
                             timeout=20.0)
PREVIEW_LIMIT = 200


def _summary(scene: Any) -> dict[str, Any]:
    doc = scene.to_json()
    props = doc.pop("properties")
    keep = ("eo:cloud_cover", "cloud_cover", "s2:mgrs_tile", "grid:code", "platform",
            "sat:relative_orbit", "relative_orbit", "sat:orbit_state", "flight_direction",
            "beam_mode", "product", "processing_level", "incidence_angle", "view:incidence_angle")
    doc["properties"] = {k: v for k, v in props.items() if k in keep}
    doc["assets"] = sorted(doc["assets"])  # names only: hrefs may carry signed tokens
    return doc


def preview_scenes(raw: Any, *, provider: Any = None) -> dict[str, Any]:
    """Search the archive for a scene request; return the scenes it selects.

    Parameters
    ----------
    raw
        The request as JSON (:class:`gdmio.providers.resolve.SceneRequest` fields).
    provider
        A provider object (tests); default from the request and the environment.

    Returns
    -------
    dict
        ``{"provider", "numberMatched", "scenes": [...]}``; scenes oldest first, at most
        :data:`PREVIEW_LIMIT` of them.

    Raises
    ------
    SubmitError
        400 for a bad request (with the field at fault), 502 when the archive fails.

    """
    if not isinstance(raw, dict):
        raise SubmitError(400, "a scene search needs a JSON object {provider, aoi, start, end}")
    try:
        request = SceneRequest.model_validate(raw)
        query = request.query()
        if provider is None:
            extra = {} if request.provider == "pleiades" else {"policy": PREVIEW_POLICY}
            provider = get_provider(request.provider, **extra)
        scenes = search_scenes(request, provider=provider)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise SubmitError(400, f"invalid scene search: {where}: {first['msg']}") from None
    except InputError as exc:
        raise SubmitError(400, f"invalid scene search: {exc}") from None
    except RemoteError as exc:
        raise SubmitError(502, f"the {raw.get('provider')} archive failed: {exc}") from None
    return {"provider": request.provider, "numberMatched": len(scenes),
            "start": query.start.isoformat().replace("+00:00", "Z"),
            "end": query.end.isoformat().replace("+00:00", "Z"),
            "scenes": [_summary(s) for s in scenes[-PREVIEW_LIMIT:]]}
