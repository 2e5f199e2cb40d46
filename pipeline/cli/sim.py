"""`tierline sim`: the built-in provider simulator, on its own.

tierline sim serve --port 8089      # then base_url http://127.0.0.1:8089/v1
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The built-in provider simulator.", no_args_is_help=True)


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8089,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    latency_ms: Annotated[float, typer.Option(help="Mean latency per answer.")] = 20.0,
    config: Annotated[Path | None, typer.Option(help="Simulator config (YAML or JSON).")] = None,
) -> None:
    """Serve the simulator alone; point any OpenAI or Anthropic client at it.

    Example:  tierline sim serve --port 8089   then  base_url http://127.0.0.1:8089/v1
    """
    import yaml

    from pipeline.sim import SimConfig
    from pipeline.sim import serve as serve_sim

    if config:
        cfg = SimConfig.model_validate(yaml.safe_load(config.read_text()))
    else:
        cfg = SimConfig.model_validate({"latency": {"mean_ms": latency_ms}})
    serve_sim(
        cfg,
        host,
        port,
        on_ready=lambda url: print(f"tierline simulator listening on {url}", flush=True),
    )
