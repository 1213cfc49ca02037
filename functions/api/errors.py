"""Every error answered as `{"ok": false, "error": "..."}` (docs/api.md, Errors): validation (422, with the
fields in `detail`), the policy's refusals, HTTP errors, a bad cursor, AWS unavailable (503), the rest (500)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mailproxy.dal.message_queries import BadCursor
from mailproxy.logic.policy import Forbidden, Invalid, NotFound, PolicyError, Refused
from mailproxy.models import describe_errors

logger = Logger(child=True)

POLICY_STATUS: dict[type[PolicyError], int] = {Refused: 400, Forbidden: 403, NotFound: 404, Invalid: 422}


def _failure(status: int, error: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"ok": False, "error": error})


def _field_errors(errors: Any) -> list[dict[str, Any]]:
    # Never echo the input: it may hold a password.
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    return JSONResponse(
        status_code=422,
        content={
            "ok": False,
            "error": describe_errors(errors, request_location=True),
            "detail": _field_errors(errors),
        },
    )


async def _policy(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PolicyError)
    return _failure(POLICY_STATUS[type(exc)], str(exc))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return _failure(exc.status_code, exc.detail)


async def _cursor(_: Request, exc: Exception) -> JSONResponse:
    return _failure(400, str(exc))


async def _aws(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("AWS call failed")
    return _failure(503, "storage or queue unavailable; retry")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error")
    return _failure(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(PolicyError, _policy)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(BadCursor, _cursor)
    app.add_exception_handler(ClientError, _aws)
    app.add_exception_handler(BotoCoreError, _aws)
    app.add_exception_handler(Exception, _unexpected)
