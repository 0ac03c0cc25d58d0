"""The built-in annotation server: a FastAPI app over one engine, plus the static page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ..answers import SESSION_PATTERN, Answer, AnswerError
from ..engine import Engine
from ..keys import label_keys as keys_for
from ..store import StoreError
from .guard import MAX_BODY, Guard

STATIC = Path(__file__).parent / "static"
VIEWS = ("colour", "record", "image")
IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg"}
# The page is self-contained: no inline script, nothing from another origin, so a pool field
# that smuggles markup in cannot run, and the page works offline.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'")


class QuestionsRequest(BaseModel):
    """Leasing rows changes what others are served, so it is a POST with a JSON body."""

    model_config = ConfigDict(extra="forbid")
    session: str = Field(pattern=SESSION_PATTERN)
    n: int | None = Field(default=None, ge=1, le=200)
    fresh: bool = False  # a page (re)load: hand back what the session held first


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session: str = Field(pattern=SESSION_PATTERN)


class RetractRequest(BaseModel):
    """Undo of a saved answer: the session's answer to this task is deleted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    session: str = Field(pattern=SESSION_PATTERN)
    input_hash: StrictInt = Field(alias="_input_hash")
    task_hash: StrictInt = Field(alias="_task_hash")


class AnswerBatch(BaseModel):
    session: str = Field(pattern=SESSION_PATTERN)
    answers: list[Answer] = Field(max_length=1000)


def create_app(engine: Engine, *, view: str = "record", image_root: str | Path | None = None,
               host: str = "127.0.0.1", token: str | None = None,
               max_body: int = MAX_BODY, keys: str | None = None) -> FastAPI:
    """The ASGI app for one engine, guarded for ``host`` (``guard.py``). Tests use it without
    starting a server. ``keys`` picks the labels on the page (``keys.label_keys``)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: use one of {', '.join(VIEWS)}")
    image_root = Path(image_root or engine.pool.path.parent).resolve()
    label_keys = keys_for(engine.labels, keys)
    # The interactive docs would load Swagger UI from a CDN, and the page must work offline:
    # the schema is at /openapi.json for any OpenAPI viewer.
    app = FastAPI(title="retrain-loop", docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.add_middleware(Guard, host=host, token=token, max_body=max_body)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(AnswerError)
    async def answer_error(request: Request, exc: AnswerError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's own handler echoes the offending input, and fails (500) on the very input
        # that was refused: NaN, Infinity, a lone surrogate. Where and why is enough.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
                  for e in exc.errors()]
        return Response(json.dumps({"detail": errors}, ensure_ascii=True, default=str),
                        status_code=422, media_type="application/json")

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "model_round": engine.round}

    @app.get("/api/project")
    def project() -> dict[str, Any]:
        return {
            "dataset": engine.dataset,
            "labels": engine.labels,
            "view": view,
            "batch_size": engine.settings.batch_size,
            "features": engine.pool.features,
            "model": engine.model_spec,
            "strategy": engine.settings.strategy,
            "n_pool": len(engine.pool),
            "keys": label_keys,  # one per label; None past the last key
            "mode": engine.settings.mode,
        }

    @app.post("/api/questions")
    def questions(request: QuestionsRequest) -> dict[str, Any]:
        if request.fresh:
            engine.release_session(request.session)
        return {"tasks": engine.get_questions(request.session, request.n)}

    @app.post("/api/release")
    def release(request: SessionRequest) -> dict[str, Any]:
        """A page that closes hands back the rows it held, for others to answer now."""
        return {"released": engine.release_session(request.session)}

    @app.post("/api/retract")
    def retract(request: RetractRequest) -> dict[str, Any]:
        return {"retracted": engine.retract(request.session, request.input_hash,
                                            request.task_hash)}

    @app.post("/api/answers")
    def answers(batch: AnswerBatch) -> dict[str, Any]:
        payload = [a.model_dump(by_alias=True) for a in batch.answers]
        stored = engine.add_answers(payload, batch.session)
        return {"stored": stored}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        return engine.stats()

    @app.get("/api/image")
    def image(path: str = Query(min_length=1, max_length=1000)) -> FileResponse:
        try:
            target = (image_root / path).resolve()
        except (ValueError, OSError):  # a NUL byte, a name too long
            raise HTTPException(status_code=404, detail="no such image") from None
        if (
            not target.is_relative_to(image_root)
            or target.suffix.lower() not in IMAGE_TYPES
            or not target.is_file()
        ):
            raise HTTPException(status_code=404, detail="no such image")
        return FileResponse(target)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
