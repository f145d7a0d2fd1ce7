"""Validate Celeriac's OpenAPI document, then call every documented operation of a running
server and check that it answers as documented: the status is one the operation lists, the
JSON body matches the documented schema, 401 without a token where a token is required, and
403 with the read-only token where the admin scope is required.

usage: openapi_check.py BASE_URL ADMIN_TOKEN READ_TOKEN FIXTURES_JSON
FIXTURES_JSON maps path parameters to values that exist, e.g. {"id": "<uuid>", "name": "q"}; a
key starting with "/" maps a path prefix to parameters that win for the paths under it, e.g.
{"name": "q", "/api/v1/periodic-tasks/": {"name": "nightly"}}.
DELETE operations run last, so they do not remove what the others need.
Prints a JSON report on stdout; exits non-zero listing every mismatch.
"""
import json
import sys
import urllib.error
import urllib.request

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

base, admin, read, fixtures = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
problems = []


def call(method, url, token=None, body=None):
    data = None
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + url, data=data, method=method.upper(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


status, _, raw = call("get", "/api/v1/openapi.json")
if status != 200:
    sys.exit(f"GET /api/v1/openapi.json answered {status}")
spec = json.loads(raw)
validate_spec(spec)  # raises on an invalid document
components = spec.get("components", {})


def check_body(op_id, status, ctype, raw, responses):
    doc = responses.get(str(status))
    if doc is None:
        problems.append(f"{op_id}: answered {status}, which is not documented ({sorted(responses)})")
        return
    content = doc.get("content") or {}
    if not content:
        return
    if "application/json" in content:
        if "application/json" not in ctype:
            problems.append(f"{op_id} {status}: content type {ctype!r}, documented application/json")
            return
        try:
            body = json.loads(raw)
        except ValueError as e:
            problems.append(f"{op_id} {status}: body is not JSON: {e}")
            return
        schema = content["application/json"].get("schema")
        if schema is not None:
            root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": components, "allOf": [schema]}
            errors = sorted(Draft202012Validator(root).iter_errors(body), key=str)
            for e in errors[:3]:
                problems.append(f"{op_id} {status}: body does not match the schema: {e.message} at {list(e.absolute_path)}")
    else:
        wanted = next(iter(content))
        if wanted.split(";")[0] not in ctype:
            problems.append(f"{op_id} {status}: content type {ctype!r}, documented {wanted}")


def example_body(op):
    rb = op.get("requestBody")
    if not rb:
        return None
    media = rb.get("content", {}).get("application/json", {})
    schema = media.get("schema", {})
    if "example" in media:
        return media["example"]
    ref = schema.get("$ref") or next((s.get("$ref") for s in schema.get("oneOf", []) if "$ref" in s), None)
    if ref:
        target = components["schemas"][ref.rsplit("/", 1)[1]]
        if "example" in target:
            return target["example"]
    return {}


def params_for(path):
    params = {k: v for k, v in fixtures.items() if not k.startswith("/")}
    for prefix, over in sorted((k, v) for k, v in fixtures.items() if k.startswith("/")):
        if path.startswith(prefix):
            params.update(over)
    return params


operations = []
for path, item in spec["paths"].items():
    url = path
    for k, v in params_for(path).items():
        url = url.replace("{" + k + "}", urllib.request.quote(str(v), safe=""))
    if "{" in url:
        problems.append(f"{path}: no fixture for its path parameters")
        continue
    for method, op in item.items():
        if method in ("get", "post", "put", "patch", "delete"):
            operations.append((method == "delete", path, url, method, op))

report = []
for _, path, url, method, op in sorted(operations, key=lambda o: o[0]):
    op_id = f"{method.upper()} {path}"
    responses = op.get("responses", {})
    body = example_body(op)
    secured = bool(op.get("security"))
    entry = {"operation": op_id}
    if secured:
        s, ct, raw = call(method, url, None, body)
        entry["no_token"] = s
        if s != 401:
            problems.append(f"{op_id}: without a token answered {s}, expected 401")
        check_body(op_id, s, ct, raw, responses)
        s, ct, raw = call(method, url, read, body)
        entry["read_token"] = s
        check_body(op_id, s, ct, raw, responses)
        if method == "get" and not (200 <= s < 300):
            problems.append(f"{op_id}: the read-only token got {s}")
        if method != "get" and s != 403:
            problems.append(f"{op_id}: the read-only token got {s}, expected 403 (admin scope)")
    s, ct, raw = call(method, url, admin if secured else None, body)
    entry["admin_token" if secured else "anonymous"] = s
    check_body(op_id, s, ct, raw, responses)
    if not (200 <= s < 300):
        problems.append(f"{op_id}: answered {s} with fixtures {fixtures}: {raw[:200]!r}")
    report.append(entry)

json.dump({"openapi": spec.get("openapi"), "operations": report, "problems": problems}, sys.stdout, indent=1)
if problems:
    sys.exit("\n".join(problems))
