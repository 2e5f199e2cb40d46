"""The job spec as JSON Schema, for editors (yaml-language-server) and CI checks.

tierline schema --out schemas/job.schema.json
"""

from __future__ import annotations

import json

from schemas.job import JobSpec


def spec_json_schema() -> str:
    schema = JobSpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tierline job spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
