"""The OpenAPI document: generated from the models, committed, and complete."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from pixme.errors import CODES
from pixme.openapi import ROUTES, document, rendered

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_spec_is_what_the_models_generate() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert committed == rendered(), "openapi.json drifted from the models: run `make docs`"


def test_every_entry_point_and_only_those_are_in_the_spec() -> None:
    tree = ast.parse((ROOT / "functions" / "main.py").read_text())
    http = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(d, ast.Attribute) and d.attr == "http" for d in node.decorator_list)
    }
    assert {route.function for route in ROUTES} == http


def test_every_http_error_code_is_documented_with_its_status() -> None:
    spec = json.dumps(document())
    for code, (status, meaning) in CODES.items():
        assert f'"{code}"' in spec, code
        assert 400 <= status < 600 and meaning


def test_each_operation_documents_auth_and_its_errors() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            statuses = set(op["responses"])
            assert any(s.startswith("2") for s in statuses), (method, path)
            assert "500" in statuses and "405" in statuses, (method, path)
            if op["security"]:
                assert "401" in statuses, (method, path)
            for status, response in op["responses"].items():
                if not status.startswith("2"):
                    enum = response["content"]["application/json"]["schema"]["allOf"][1]
                    codes = enum["properties"]["error"]["properties"]["code"]["enum"]
                    assert all(CODES[c][0] == int(status) for c in codes), (path, status)
