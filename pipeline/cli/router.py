"""`tierline router`: train (fit the learned router and write its model file) and tune.

    router_train_command(Path("data/routerbench"), Path("router.npz"), features=["eval_name"])
    router_tune_command(Path("data/routerbench"), target=0.95, out=Path("routing.yaml"))
    router_train_command(None, Path("router.npz"), runs=["out/nightly-ab12"],
                         runs_input=Path("tickets/"), id_column="ticket_id",
                         text_columns=["subject", "body"])

`data` is a folder in the two-file format (prompts.parquet + responses.parquet; only rows
with split == train are read). `runs` are output prefixes of earlier tierline jobs
(`<output>/<job_id>`), whose labels come from results, costs and the cascade's records;
their text comes from `runs_input`, the folder those jobs read. Both may be given.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape

from pipeline.cli.common import err, out
from pipeline.routing.labelled import read_labelled_run
from pipeline.routing.learned import RouterModel
from pipeline.routing.recorded import load_recorded
from pipeline.routing.train import (
    FitOptions,
    TrainingDataError,
    TrainingSet,
    combine,
    fit_router,
    from_runs,
    from_two_file,
    parse_tiers,
)
from pipeline.routing.tune import CannotPromise, TuneResult, tune
from pipeline.routing.tune_report import (
    TABLE_COLUMNS,
    render_fragment,
    render_svg,
    render_table_rows,
)


def _read_folder(uri: str) -> pl.DataFrame:
    from pipeline.store import Store

    store = Store.open(uri)
    files = store.list_files("", suffix=".parquet")
    if not files:
        raise TrainingDataError(f"{uri}: no .parquet files")
    frames = [pl.read_parquet(io.BytesIO(store.read_bytes(f.path))) for f in files]
    return pl.concat(frames, how="diagonal_relaxed")


def _manifest_input(run: str) -> tuple[str, str, Sequence[str]]:
    from pipeline.jobfolder import JobFolder

    manifest = JobFolder.at(run).read_manifest()
    if manifest is None:
        raise ValueError(
            f"{run}: no job manifest there; give the job's output folder, or --runs-input"
        )
    given = manifest["input"]
    return str(given["uri"]), str(given.get("id_column", "id")), given.get("text_columns", ["text"])


def router_train_command(
    data: Path | None,
    out: Path | str,
    *,
    against: str | None = None,
    holdout: float = 0.25,
    confidence: float = 0.9,
    tiers: str | None = None,
    features: Sequence[str] = (),
    runs: Sequence[str] = (),
    runs_input: str | Path | None = None,
    id_column: str = "id",
    text_columns: Sequence[str] = ("text",),
    feedback: Path | None = None,
    decision: str = "utility",
    cascade: bool = False,
    folds: int = 5,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> RouterModel:
    """Build the training set, fit, calibrate, write `out`; returns the model.

    Raises TrainingDataError (bad data) or ValueError (bad arguments): exit code 2.
    """
    from jobs.base import text_expr

    if decision not in ("threshold", "utility"):
        raise ValueError(f"decision must be threshold or utility, not {decision!r}")
    if data is None and not runs:
        raise ValueError(
            "give --data DIR (a two-file folder) and/or --run PREFIX (an earlier job's "
            "output; repeatable)"
        )
    mapping = parse_tiers(tiers)
    sets: list[TrainingSet] = []
    if data is not None:
        sets.append(from_two_file(data, mapping, list(features)))
    if runs:
        if runs_input is None:  # what the first run read, as its manifest says
            runs_input, id_column, text_columns = _manifest_input(runs[0])
        inputs = _read_folder(str(runs_input))
        inputs = inputs.with_columns(text_expr(list(text_columns)).alias("__router_text"))
        fb = pl.read_parquet(feedback) if feedback is not None else None
        sets.append(
            from_runs(
                runs,
                inputs,
                id_column=id_column,
                text_column="__router_text",
                features=list(features),
                tiers=mapping if tiers else None,
                feedback=fb,
            )
        )
    ts = combine(sets) if len(sets) > 1 else sets[0]
    options = FitOptions(decision=decision, cascade=cascade, folds=folds, seed=seed)  # type: ignore[arg-type]
    if against is not None:
        return _retrain(ts, options, against, out, holdout, confidence, seed, echo)
    model = fit_router(ts, options)
    _save(model, out)
    echo(describe(model, Path(out)))
    return model


def _save(model: RouterModel, out: Path | str) -> None:
    if isinstance(out, Path) or "://" not in out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    model.save(out)


def _retrain(
    ts: TrainingSet,
    options: FitOptions,
    against: str,
    out: Path | str,
    holdout: float,
    confidence: float,
    seed: int,
    echo: Callable[[str], None],
) -> RouterModel:
    """Fit on part of the rows; write `out` only if it beats `against` on the rest."""
    from pipeline.routing.adopt import compare, holdout_split

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"--confidence must be between 0 and 1, not {confidence}")
    current = RouterModel.load(against)  # RouterFileError (a ValueError): exit 2
    train_rows, held = holdout_split(ts.frame.height, holdout, seed)
    candidate = fit_router(ts.subset(train_rows), options)
    verdict = compare(current, candidate, ts.subset(held), confidence=confidence, seed=seed)
    candidate.info["adoption"] = {"against": against, **verdict.as_dict()}
    if verdict.adopt:
        _save(candidate, out)
        echo(describe(candidate, Path(out)))
    echo(verdict.reason)
    return candidate if verdict.adopt else current


def describe(model: RouterModel, path: Path | None = None) -> str:
    """A few lines for the terminal: what was trained and how it validated."""
    info = model.info
    val = info.get("validation", {})
    lines = [
        f"router model {path or ''} ({model.decision}{', cascade' if model.cascade else ''})",
        "  tiers: " + ", ".join(f"{t}={m}" for t, m in model.tiers.items()),
        f"  rows: {info.get('rows')}  excluded: {info.get('excluded')}",
        f"  data sha256: {str(info.get('data_sha256', ''))[:16]}...",
        "  validation AUC: " + ", ".join(f"{k} {v:.3f}" for k, v in val.get("auc", {}).items()),
        f"  {'preset':<10} {'threshold':>10} {'quality':>8} {'cost':>7} {'flagship':>9}",
    ]
    for name, p in val.get("presets", {}).items():
        flag = "" if p["target_met"] else "  (target not reached)"
        lines.append(
            f"  {name:<10} {p['threshold']:>10.4f} {p['rel_quality']:>8.1%} "
            f"{p['rel_cost']:>7.1%} {p['flagship_share']:>9.1%}{flag}"
        )
    lines.append("  (quality and cost relative to all-flagship, on cross-fitted validation)")
    return "\n".join(lines)


app = typer.Typer(help="Train, tune and inspect learned routers.", no_args_is_help=True)


@app.command("train")
def train_command(
    out_path: Annotated[
        str, typer.Option("--out", help="Router model file to write (a path or s3:// URI).")
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="Folder of prompts.parquet + responses.parquet (recorded answers)."),
    ] = None,
    runs: Annotated[
        list[str] | None, typer.Option("--run", help="Earlier job output prefix (repeatable).")
    ] = None,
    runs_input: Annotated[
        str | None,
        typer.Option(help="Input folder of those runs (for the text); default: what they read."),
    ] = None,
    tiers: Annotated[str | None, typer.Option(help="cheap=MODEL,mid=MODEL,flagship=MODEL")] = None,
    features: Annotated[
        list[str] | None, typer.Option("--feature", help="Metadata column (repeatable).")
    ] = None,
    cascade: Annotated[
        bool, typer.Option(help="Train for use with a cheap/mid agreement cascade.")
    ] = False,
    against: Annotated[
        str | None,
        typer.Option(
            help="The router in use (path or s3:// URI): fit on part of the rows and write "
            "--out only if the new router predicts better on the rest, with --confidence."
        ),
    ] = None,
    holdout: Annotated[
        float, typer.Option(help="With --against: share of rows held back to compare on.")
    ] = 0.25,
    confidence: Annotated[
        float, typer.Option(help="With --against: confidence that the new router is better.")
    ] = 0.9,
) -> None:
    """Fit a learned router: per tier, the probability its answer is good enough.

    Example:  tierline router train --data recorded/ --feature eval_name --out router.npz

    Nightly retrain from last night's cascade verdicts, adopted only if it is better:

      tierline router train --run s3://b/out/nightly-2026-12-04/ --cascade
        --against s3://b/models/router.npz --out s3://b/models/router.npz
    """
    try:
        router_train_command(
            data,
            out_path,
            tiers=tiers,
            features=tuple(features or ()),
            runs=tuple(runs or ()),
            runs_input=runs_input,
            cascade=cascade,
            against=against,
            holdout=holdout,
            confidence=confidence,
            echo=out.print,
        )
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def router_tune_command(
    data: Path | None,
    *,
    runs: Sequence[str] = (),
    label: str | None = None,
    runs_input: str | Path | None = None,
    id_column: str = "id",
    text_columns: Sequence[str] = ("text",),
    target: float = 0.95,
    absolute: bool = False,
    confidence: float = 0.9,
    deployments: Sequence[str] = (),
    flagship: str | None = None,
    max_cost_share: float | None = None,
    provider: str = "sim",
    out: Path | None = None,
    svg: Path | None = None,
    json_path: Path | None = None,
    model_out: Path | None = None,
    folds: int = 5,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> TuneResult:
    """Tune on recorded answers (`data`) or a labelled sample run (`runs` + `label`); write
    the spec fragment (and the router file a learned pick needs), the plot and the JSON.

    Raises TuneDataError (bad data, or CannotPromise: nothing certified) or ValueError.
    """
    from jobs.base import text_expr

    if (data is None) == (not runs):
        raise ValueError("give either --data (recorded answers) or --run with --label")
    models = list(deployments) or None
    if data is not None:
        recorded = load_recorded(data, models)
    else:
        if not label:
            raise ValueError("--run needs --label: the column holding each answer's verdict")
        inputs = None
        if runs_input is not None:
            inputs = _read_folder(str(runs_input)).with_columns(
                text_expr(list(text_columns)).alias("__tune_text")
            )
        recorded = read_labelled_run(
            runs,
            label=label,
            inputs=inputs,
            id_column=id_column,
            text_column="__tune_text",
            models=models,
        )
    try:
        result = tune(
            recorded,
            target=target,
            confidence=confidence,
            folds=folds,
            seed=seed,
            deployments=models,
            flagship=flagship,
            absolute=absolute,
            max_cost_share=max_cost_share,
        )
    except CannotPromise as exc:
        if exc.result is not None:
            echo(describe_tuning(exc.result))
        raise
    model_path = model_out or (out.with_name("router.npz") if out else Path("router.npz"))
    fragment = render_fragment(result, provider=provider, model_path=str(model_path))
    if result.router is not None:
        model_path.parent.mkdir(parents=True, exist_ok=True)
        result.router.save(model_path)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(fragment, encoding="utf-8")
    if svg is not None:
        svg.write_text(render_svg(result), encoding="utf-8")
    if json_path is not None:
        doc = {
            "pick": result.pick.policy.name if result.pick else None,
            "message": result.message,
            "target": result.target,
            "absolute": result.absolute,
            "confidence": result.confidence,
            "method": result.method,
            "rows": result.rows,
            "flagship": result.flagship,
            "columns": list(TABLE_COLUMNS),
            "table": render_table_rows(result),
            "fragment": fragment,
        }
        json_path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    echo(describe_tuning(result))
    if out is None:
        echo(fragment)
    return result


def describe_tuning(result: TuneResult, limit: int = 25) -> str:
    """The tested sequence as a terminal table, then what was promised (or why not)."""
    lines = [
        f"{'policy':<64} {'acc':>6} {'cost':>7} {'flag.':>6} {'bound':>6}  certified",
    ]
    for name, acc, cost, flag, bound, ok in render_table_rows(result)[:limit]:
        lines.append(
            f"{name[:64]:<64} {acc:>6.3f} {cost:>7.1%} {flag:>6.1%} {bound:>6.3f}  "
            f"{'yes' if ok else 'no'}"
        )
    lines.append(result.message)
    return "\n".join(lines)


@app.command("tune")
def tune_command(
    data: Annotated[
        Path | None,
        typer.Option(help="Folder of prompts.parquet + responses.parquet (recorded answers)."),
    ] = None,
    runs: Annotated[
        list[str] | None,
        typer.Option("--run", help="Output prefix of a labelled sample run (repeatable)."),
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="The results column holding each answer's verdict.")
    ] = None,
    runs_input: Annotated[
        str | None, typer.Option(help="Input folder of those runs (text for learned routing).")
    ] = None,
    target: Annotated[
        float, typer.Option(help="Share of flagship accuracy (or accuracy, with --absolute).")
    ] = 0.95,
    absolute: Annotated[bool, typer.Option(help="--target is an accuracy, not a share.")] = False,
    confidence: Annotated[float, typer.Option(help="Confidence of the promise.")] = 0.9,
    deployments: Annotated[
        list[str] | None, typer.Option("--deployment", help="Recorded model to consider.")
    ] = None,
    max_cost_share: Annotated[
        float | None, typer.Option(help="Pick only policies within this share of flagship cost.")
    ] = None,
    provider: Annotated[str, typer.Option(help="Provider name in the fragment.")] = "sim",
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write the spec fragment (YAML) here.")
    ] = None,
    svg: Annotated[Path | None, typer.Option(help="Write the cost-quality plot here.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
    model_out: Annotated[
        Path | None, typer.Option(help="Router file for a learned pick (default beside --out).")
    ] = None,
) -> None:
    """Find the cheapest routing policy that keeps a quality target, with a stated confidence.

    Example:  tierline router tune --data recorded/ --target 0.95 --out routing.yaml --svg curve.svg
    """
    try:
        router_tune_command(
            data,
            runs=tuple(runs or ()),
            label=label,
            runs_input=runs_input,
            target=target,
            absolute=absolute,
            confidence=confidence,
            deployments=tuple(deployments or ()),
            max_cost_share=max_cost_share,
            provider=provider,
            out=out_path,
            svg=svg,
            json_path=json_path,
            model_out=model_out,
            # Policy names hold square brackets: print them as text, not as rich markup.
            echo=lambda text: out.print(text, markup=False, highlight=False),
        )
    except ValueError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
