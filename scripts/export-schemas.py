"""Write the JSON Schemas of okai's documents to docs/schemas/ (a test keeps them current)."""

from __future__ import annotations

import json
from pathlib import Path

from okai.manifest import DOCUMENT_TYPES
from okai.provenance.receipt import Receipt

OUT = Path(__file__).resolve().parent.parent / "docs" / "schemas"

for document_type in (*DOCUMENT_TYPES, Receipt):
    name = f"okai.{document_type.KIND}.v1.schema.json"
    schema = document_type.model_json_schema(by_alias=True) | {
        "$id": f"https://okai.dev/schemas/{name}",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
    }
    (OUT / name).write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    print(f"wrote docs/schemas/{name}")
