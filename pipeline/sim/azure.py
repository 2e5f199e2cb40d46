"""Azure OpenAI in the simulator: OpenAI's bodies behind Azure's URL, key header and errors.

    POST /openai/deployments/{deployment}/chat/completions?api-version=2024-10-21
    api-key: <key>

    client = openai.AzureOpenAI(azure_endpoint=sim.root_url, api_version="2024-10-21",
                                api_key="k")
    client.chat.completions.create(model="mini-prod", messages=[...])   # a deployment

Checked in Azure's order: the `api-key` header (401 without one: Azure takes no
`Authorization: Bearer` API key), the `api-version` query (404 without one, 400 for a
version that is not a date), the deployment (404 `DeploymentNotFound`); then the request
takes the OpenAI path of `handlers.py` with the deployment's model. `SimConfig.
azure_deployments` maps deployment names to models; a served model's own name is a
deployment too. Rate limits show as `x-ratelimit-remaining-requests/tokens` only (Azure
announces no limits), and a 429 carries `retry-after` and `retry-after-ms`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from aiohttp import web

from pipeline.sim.handlers import ANONYMOUS, STATE, CompletionHandler, SimState, key_refused
from pipeline.sim.limits import RateState
from pipeline.sim.request import JSON
from pipeline.sim.wire import OpenAIWire, Reply, SimRequest

ROUTE = "/openai/deployments/{deployment}/chat/completions"
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
# Azure's gateway answers these itself, as {"error": {"code", "message"}}; what reaches the
# model comes back in OpenAI's shape (type, param, code).
_GATEWAY_STATUSES = frozenset({401, 403, 404, 408, 429})
_GATEWAY_CODES = frozenset({"BadRequest", "DeploymentNotFound"})
_NO_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API "
    "endpoint for your resource."
)
_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment "
    "within the last 5 minutes, please wait a moment and try again."
)
_FILTERED: JSON = {
    category: {"filtered": False, "severity": "safe"}
    for category in ("hate", "self_harm", "sexual", "violence")
}


class AzureWire(OpenAIWire):
    """OpenAI's chat completions as Azure serves them."""

    name = "azure"

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("api-key", "").strip() or None

    def answer(
        self,
        request: SimRequest,
        reply: Reply,
        *,
        answer_id: str,
        created: int,
        batch: bool = False,
    ) -> JSON:
        payload = super().answer(request, reply, answer_id=answer_id, created=created)
        # Azure adds its content filter's verdicts, on the prompt and on each choice.
        payload["prompt_filter_results"] = [
            {"prompt_index": 0, "content_filter_results": dict(_FILTERED)}
        ]
        choices = payload["choices"]
        if isinstance(choices, list):
            for choice in choices:
                choice["content_filter_results"] = dict(_FILTERED)
        return payload

    def error(self, status: int, message: str, kind: str | None = None) -> JSON:
        if status in _GATEWAY_STATUSES or kind in _GATEWAY_CODES:
            code = kind if kind in _GATEWAY_CODES else str(status)
            return {"error": {"code": code, "message": message}}
        return super().error(status, message, kind)

    def retry_headers(self, wait_s: float) -> dict[str, str]:
        return {
            "retry-after": str(max(1, math.ceil(wait_s))),
            "retry-after-ms": str(max(1, math.ceil(wait_s * 1000))),
        }

    def rate_headers(self, state: RateState, wall_now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        if state.requests_limit is not None:
            headers["x-ratelimit-remaining-requests"] = str(state.requests_remaining)
        if state.tokens_limit is not None:
            headers["x-ratelimit-remaining-tokens"] = str(state.tokens_remaining)
        return headers


AZURE = AzureWire()


def deployment_model(state: SimState, deployment: str) -> str | None:
    """The model a deployment serves, or None (no such deployment)."""
    model = state.config.azure_deployments.get(deployment, deployment)
    return model if state.catalogue.serves(model) else None


def add_routes(app: web.Application, completions: CompletionHandler) -> None:
    async def chat(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        raw = AZURE.api_key(request.headers)
        key = raw or ANONYMOUS
        deployment = request.match_info["deployment"]
        if raw is None or key_refused(state.config, raw):
            return completions.refuse(AZURE, "", key, 401, _NO_KEY)
        version = request.query.get("api-version")
        if version is None:
            return completions.refuse(AZURE, "", key, 404, "Resource not found")
        if not _API_VERSION.match(version):
            return completions.refuse(
                AZURE, "", key, 400, "API version not supported", "BadRequest"
            )
        model = deployment_model(state, deployment)
        if model is None:
            return completions.refuse(AZURE, "", key, 404, _NO_DEPLOYMENT, "DeploymentNotFound")
        return await completions.complete(request, AZURE, model=model)

    app.router.add_post(ROUTE, chat)
