"""The bare limit for `benchmarks/serve.py`: loanrisk's own fast scorer behind a minimal
ASGI app, with no prediction log, no auth, no metrics, no validation beyond the scorer's.

    uvicorn bare:app_factory --factory --app-dir benchmarks   (LOANRISK_HOME set)

It answers the same PD, decision, grade and reasons as `loanrisk serve`, so the ratio
between the two is the price of everything a lender needs around the model.
"""

from __future__ import annotations

import json
from typing import Any

from loanrisk.config import get_settings
from loanrisk.registry import Registry
from loanrisk.serving.model import ModelHolder


def app_factory() -> Any:
    settings = get_settings()
    holder = ModelHolder(settings, Registry(settings))
    holder.refresh()
    if holder.current is None:
        raise SystemExit(f"no model: {holder.problem}")
    scorer = holder.current.scorer

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/ready":
            answer, code = b'{"ready":true}', 200
        else:
            payload = json.loads(body)
            items = payload if isinstance(payload, list) else [payload]
            results = scorer.score(items)
            answer = json.dumps(
                {
                    "predictions": [
                        {k: r[k] for k in ("loan_id", "pd", "decision", "grade", "reasons")}
                        for r in results
                    ]
                }
            ).encode()
            code = 200
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app
