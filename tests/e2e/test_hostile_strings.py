"""Hostile strings in Chart.yaml against real Helm clients (issue 13, item 1).

Charts carry, in every field that holds text, strings YAML forbids raw or
folds: C0 controls, DEL, C1 controls, NEL, U+2028/2029, the BOM, U+FFFE/FFFF,
characters past the BMP, leading/trailing spaces, ": ", "#", YAML keywords.
`helm package` refuses some of them, so the packages are built here and
uploaded over the API. Then PyYAML must load index.yaml (and the JSON index)
with every string equal to the original, helm-sdkpy (Helm 4.3) must `repo add`
and `repo update`, and helm-python-sdk (Helm 4.2) must parse the index and
pull every chart.
"""

from __future__ import annotations

import json

import yaml

from e2e_lib import build_package, fetch_index, helm_ok, run_helm, upload, yaml_quoted

HOSTILE = [
    "c0 \x00\x01\x08\x0b\x0c\x1b[31m\x1f end",
    "tab\tcr\rlf\nend",
    "del \x7f",
    "c1 \x80\x9b\x9f",
    "nel \x85 next",
    "ls \u2028 ps \u2029",
    "bom \ufeff",
    "nonchars \ufffe\uffff",
    "astral \U0001F600 \U0010FFFF",
    " leading",
    "trailing ",
    "key: value",
    "# not a comment",
    "a #b",
    "yes",
    "null",
    "~",
    '"quoted" and \\',
    "all: \x00\x7f\x85\u2028\ufeff\ufffe\U0001F600 # yes ",
    # Past YAML's 1024-character limit for implicit keys (an annotation key here).
    "long \x85" * 300,
]

STRING_FIELDS = ["description", "home", "icon", "appVersion", "kubeVersion", "condition", "tags"]


def chart_yaml(name: str, text: str) -> str:
    v = yaml_quoted(text)
    lines = [f"apiVersion: v2", f"name: {name}", "version: 1.0.0"]
    lines += [f"{f}: {v}" for f in STRING_FIELDS]
    lines += [
        f"keywords: [{v}, plain]",
        f"sources: [{v}]",
        "maintainers:",
        f"  - name: {v}",
        f"    email: {v}",
        f"    url: {v}",
        "annotations:",
        *([f"  ? {v}", f"  : {v}"] if len(v) > 1000 else [f"  {v}: {v}"]),
        f"  other: {v}",
        "dependencies:",
        "  - name: dep",
        f"    version: {v}",
        "    repository: https://example.invalid/charts",
        f"    condition: {v}",
        f"    tags: [{v}]",
    ]
    return "\n".join(lines) + "\n"


def check_entry(entry: dict, text: str, where: str) -> list[str]:
    got = {f: entry.get(f) for f in STRING_FIELDS}
    got.update({
        "keywords[0]": (entry.get("keywords") or [None])[0],
        "sources[0]": (entry.get("sources") or [None])[0],
        "maintainers[0].name": (entry.get("maintainers") or [{}])[0].get("name"),
        "maintainers[0].email": (entry.get("maintainers") or [{}])[0].get("email"),
        "maintainers[0].url": (entry.get("maintainers") or [{}])[0].get("url"),
        "annotations[text]": (entry.get("annotations") or {}).get(text),
        "annotations.other": (entry.get("annotations") or {}).get("other"),
        "dependencies[0].version": (entry.get("dependencies") or [{}])[0].get("version"),
        "dependencies[0].condition": (entry.get("dependencies") or [{}])[0].get("condition"),
        "dependencies[0].tags[0]": ((entry.get("dependencies") or [{}])[0].get("tags") or [None])[0],
    })
    return [f"{where}: {k} = {v!r}, want {text!r}" for k, v in got.items() if v != text]


def classes(short_keys: bool = False):
    """(index, text) of each class; ``short_keys`` leaves out the long key (JSON has no
    explicit-key form, so YAML parsers, Helm's included, cannot read a JSON key past 1024
    characters)."""
    return [(i, t) for i, t in enumerate(HOSTILE) if not short_keys or len(t) < 1000]


def upload_hostile(server, short_keys: bool = False) -> dict[str, bytes]:
    packages = {}
    for i, text in classes(short_keys):
        name = f"hostile{i}"
        data = build_package({f"{name}/Chart.yaml": chart_yaml(name, text),
                              f"{name}/values.yaml": "a: 1\n"})
        resp = upload(server, data)
        assert resp.status_code == 201, (text, resp.status_code, resp.text[:300])
        packages[name] = data
    return packages


def test_hostile_strings_reach_helm_unchanged(start_chartroom, helm_home, tmp_path):
    server = start_chartroom()
    packages = upload_hostile(server)

    # PyYAML (YAML 1.1, refuses non-printable characters) loads it, strings intact.
    index = fetch_index(server)
    problems = []
    for i, text in enumerate(HOSTILE):
        entries = (index.get("entries") or {}).get(f"hostile{i}") or [{}]
        problems += check_entry(entries[0], text, f"index.yaml hostile{i}")
    assert not problems, "\n".join(problems)

    # Helm 4.3 (helm-sdkpy): repo add + repo update read the whole index.
    home = helm_home("sdkpy")
    add, update = run_helm("helm_sdkpy", [
        {"op": "repo_add", "name": "hostile", "url": server.url},
        {"op": "repo_update"},
    ], home)
    helm_ok(add, "helm repo add (Helm 4.3)")
    helm_ok(update, "helm repo update (Helm 4.3)")
    cached = home.cached_index("hostile")
    assert sorted(cached["entries"]) == sorted(packages), sorted(cached["entries"])

    # Helm 4.2 (helm-python-sdk): parse the index, pull each chart.
    pulls = tmp_path / "pulls"
    ops = [{"op": "repo_index", "url": server.url}]
    for name in packages:
        (pulls / name).mkdir(parents=True)
        ops.append({"op": "pull", "chart": name, "repo_url": server.url,
                    "destination": str(pulls / name)})
    parsed, *pulled = run_helm("helm_python", ops, helm_home("python"))
    parsed = helm_ok(parsed, "Helm 4.2 parses index.yaml")
    assert sorted(parsed["entries"]) == sorted(packages)
    # Helm sanitizes some fields in memory (Metadata.Validate); annotations it keeps as read.
    for i, text in enumerate(HOSTILE):
        entry = parsed["entries"][f"hostile{i}"][0]
        assert entry["annotations"][text] == text, (i, entry["annotations"])
    for name, res in zip(packages, pulled):
        helm_ok(res, f"helm pull {name}")
        got = (pulls / name / f"{name}-1.0.0.tgz").read_bytes()
        assert got == packages[name], name

    # The JSON index reads back the same through a JSON and a YAML parser.
    json_server = start_chartroom(["--json-index"])
    upload_hostile(json_server, short_keys=True)
    resp = json_server.get("/index.yaml")
    assert resp.status_code == 200
    for parsed_index in (json.loads(resp.text), yaml.safe_load(resp.text)):
        problems = []
        for i, text in classes(short_keys=True):
            entry = parsed_index["entries"][f"hostile{i}"][0]
            problems += check_entry(entry, text, f"JSON index hostile{i}")
        assert not problems, "\n".join(problems)
    [parsed] = run_helm("helm_python", [{"op": "repo_index", "url": json_server.url}],
                        helm_home("python-json"))
    helm_ok(parsed, "Helm 4.2 parses the JSON index")
