"""The job spec as JSON Schema, for editors (yaml-language-server) and CI checks.

tierline schema --out schemas/job.schema.json
"""

from __future__ import annotations

import json
import re

from schemas.job import JobSpec


def spec_json_schema() -> str:
    schema = JobSpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tierline job spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def spec_reference_markdown() -> str:
    """Every field of the job spec, as Markdown tables: one per model, from the models'
    own descriptions (the README embeds this; a test keeps it in sync)."""
    from pydantic import BaseModel

    sections: list[str] = []
    seen: set[type[BaseModel]] = set()

    def type_name(annotation: object) -> str:
        text = re.sub(
            r"(typing\.)?Annotated\[schemas\.\w+\.Deployment, .*?mode=None\)\]",
            "provider/model",
            str(annotation),
        )
        text = re.sub(
            r"(typing\.)?Annotated\[list\[provider/model\], BeforeValidator\(func=<function "
            r"_expand_served.*?mode=None\)\]",
            "list[provider/model | {model, providers}]",
            text,
        )
        text = re.sub(r"schemas\.\w+\.", "", text.replace("typing.", ""))
        text = text.replace("schemas.sim.", "").replace("<class '", "").replace("'>", "")
        return text.replace("NoneType", "None").replace("Annotated[Deployment, ", "Deployment[")

    def visit(model: type[BaseModel], path: str) -> None:
        if model in seen:
            return
        seen.add(model)
        rows = ["| field | type | default | description |", "| --- | --- | --- | --- |"]
        nested: list[tuple[type[BaseModel], str]] = []
        for name, field in model.model_fields.items():
            default = (
                "required"
                if field.is_required()
                else repr(field.get_default(call_default_factory=True))
            )
            if len(default) > 40:
                default = "(see type)"
            desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            kind = type_name(field.annotation).replace("|", "\\|")
            rows.append(f"| `{name}` | {kind} | {default.replace('|', '/')} | {desc} |")
            for sub in _models_in(field.annotation):
                nested.append((sub, f"{path}.{name}" if path else name))
        title = path or "(top level)"
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        head = f"#### `{title}` ({model.__name__})\n\n" + (f"{doc}\n\n" if doc else "")
        sections.append(head + "\n".join(rows))
        for sub, sub_path in nested:
            visit(sub, sub_path)

    visit(JobSpec, "")
    return "\n\n".join(sections) + "\n"


def _models_in(annotation: object) -> list[type]:
    import typing

    from pydantic import BaseModel

    found: list[type] = []
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            if a.__name__ != "Deployment":  # written as 'provider/model'
                found.append(a)
            continue
        stack.extend(typing.get_args(a))
    return sorted(set(found), key=lambda c: c.__name__)


def output_columns_markdown() -> str:
    """The columns of results/, costs/ and errors/ as Markdown tables, from the Arrow
    schemas' own descriptions (the README embeds this; a test keeps it in sync)."""
    from schemas.records import COSTS, ERRORS, RESULTS

    out = []
    for folder, schema in (("results", RESULTS), ("costs", COSTS), ("errors", ERRORS)):
        rows = [
            f"`{folder}/unit-<n>.parquet`",
            "",
            "| column | type | meaning |",
            "| --- | --- | --- |",
        ]
        for field in schema:
            doc = (field.metadata or {}).get(b"description", b"").decode()
            rows.append(f"| `{field.name}` | {field.type} | {doc.replace('|', '/')} |")
        out.append("\n".join(rows))
    return "\n\n".join(out) + "\n"


README_SECTIONS = {
    "config-reference": spec_reference_markdown,
    "output-columns": output_columns_markdown,
}


def readme_section(text: str, name: str) -> str:
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    return text[text.index(start) + len(start) : text.index(end)]


def update_readme(path: str = "README.md") -> None:
    """Rewrite the README's generated sections: the configuration reference and the
    output columns (`make docs`)."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text()
    for name, make in README_SECTIONS.items():
        start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
        i, j = text.index(start) + len(start), text.index(end)
        text = text[:i] + make() + text[j:]
    p.write_text(text)


if __name__ == "__main__":
    update_readme()
