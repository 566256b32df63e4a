"""``/ui``: the results page, one HTML page and its script and style, served as files.

The page holds no data of its own: it asks the API for everything, with the bearer token the
person gives it (kept in the browser tab's session storage), so it obeys the token as any client
does."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, RedirectResponse

router = APIRouter(include_in_schema=False)

UI = Path(__file__).resolve().parents[2] / "ui"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/{name}")
@router.get("/ui/", name="ui_index")
async def ui_file(name: str = "index.html") -> FileResponse:
    path = UI / name
    if path.parent != UI or path.suffix not in _TYPES or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {name} in the UI")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})
