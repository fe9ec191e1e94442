"""Packaging equivalence (issue 8, item 2): chartroom's packager against real `helm package`.

For each of the ten Wikimedia charts in ../shared/testdata/wikimedia-deployment-charts (copied
to a temporary directory; the symlinked values.yaml restored as a symlink) and for synthetic
edge cases, the same directory is packaged by real Helm (helm-python-sdk, Helm 4.2) and by
chartroom's `package_chart` (through `examples/package_chart`). Both packages are loaded back
by Helm and compared: metadata, values, schema, files, templates, dependencies; and the raw
tar members (names and bytes) must be equal too. Where Helm refuses a directory, chartroom
refuses it. Packaging twice gives identical bytes.

The packager binary: CHARTROOM_PACKAGE_BIN, else target/release/examples/package_chart (built
with cargo when missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from e2e_lib import ROOT

TESTDATA = Path(
    os.environ.get(
        "CHARTROOM_WIKIMEDIA_CHARTS",
        str(ROOT.parent / "shared/testdata/wikimedia-deployment-charts/charts"),
    )
)
if not TESTDATA.is_dir():
    TESTDATA = Path("/work/shared/testdata/wikimedia-deployment-charts/charts")

WIKIMEDIA = [
    "changeprop",
    "datahub",
    "eventgate",
    "external-services",
    "kafka-dev",
    "mediawiki",
    "mediawiki-common",
    "python-webapp",
    "raw",
    "secrets",
]

# Runs in a process of its own (Helm's Go runtime and its logging stay out of pytest).
HELM_SCRIPT = textwrap.dedent(
    r'''
    import base64, json, sys
    import helm_python as helm

    def describe(path):
        c = helm.Chart.load(path)
        enc = lambda fs: sorted((f["name"], f["data"]) for f in fs)
        return {
            "metadata": c.metadata,
            "values": c.values,
            "schema": c.schema,
            "files": enc(c.files),
            "templates": enc(c.templates),
            "dependencies": sorted(json.dumps(d, sort_keys=True) for d in c.dependencies),
        }

    jobs = json.load(open(sys.argv[1]))
    out = {}
    for job in jobs:
        r = {}
        try:
            r["helm_tgz"] = helm.package(job["dir"], destination=job["dest"])
            r["helm_chart"] = describe(r["helm_tgz"])
        except Exception as e:
            r["helm_error"] = f"{type(e).__name__}: {e}"
        if job.get("ours"):
            try:
                r["ours_chart"] = describe(job["ours"])
            except Exception as e:
                r["ours_load_error"] = f"{type(e).__name__}: {e}"
        out[job["case"]] = r
    json.dump(out, open(sys.argv[2], "w"))
    '''
)


def package_bin() -> Path:
    env = os.environ.get("CHARTROOM_PACKAGE_BIN")
    if env:
        return Path(env)
    binary = ROOT / "target/release/examples/package_chart"
    if not binary.is_file():
        subprocess.run(
            ["cargo", "build", "--release", "--example", "package_chart"],
            cwd=ROOT,
            check=True,
        )
    return binary


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)


def yaml_quoted(s: str) -> str:
    """`s` as a YAML double-quoted scalar (escapes for anything YAML would fold or refuse)."""
    out = []
    for c in s:
        o = ord(c)
        if c in "\"\\":
            out.append("\\" + c)
        elif o < 0x20 or 0x7F <= o <= 0x9F or c in "\u2028\u2029\ufeff":
            out.append(f"\\u{o:04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def base_chart(d: Path, name: str = "syn", chart_yaml: str | None = None) -> Path:
    write(d / "Chart.yaml", chart_yaml or f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n")
    write(d / "values.yaml", "replicas: 1\nimage: {repo: x, tag: 'yes'}\n")
    write(d / "templates/cm.yaml", "kind: ConfigMap\nname: {{ .Release.Name }}\n")
    write(d / "README.md", "# readme\n")
    return d


def make_cases(root: Path) -> dict[str, dict]:
    """Case name -> {"dir": path, "walk_root": path | None, "allow": bool}."""
    cases: dict[str, dict] = {}
    charts = root / "wikimedia"
    shutil.copytree(TESTDATA, charts, symlinks=True)
    for p in charts.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    os.chmod(charts, 0o755)
    # The sample stores the symlink as its target text; make it a symlink again.
    link = charts / "mediawiki-common/values.yaml"
    if link.is_file() and not link.is_symlink():
        target = link.read_text().strip()
        link.unlink()
        link.symlink_to(target)
    for name in WIKIMEDIA:
        cases[f"wikimedia-{name}"] = {"dir": charts / name, "walk_root": charts}

    syn = root / "syn"

    def case(name: str, **kw) -> Path:
        d = syn / name
        cases[name] = {"dir": d, **kw}
        return d

    # .helmignore: globs, directory rules, anchored rules, comments, blank lines, nested paths.
    d = base_chart(case("ignore-rules"))
    write(d / ".helmignore", "# comment\n\n   \n*.bak\ndocs/\n/top.txt\nsub/deep/*.txt\n"
          "templates/*.skip\n.git/\n")
    for f in ["a.bak", "docs/x.md", "top.txt", "sub/top.txt", "sub/deep/a.txt",
              "sub/deep/a.md", "templates/x.skip", "templates/.hidden", "templates/ok.yaml",
              ".git/HEAD", "nested/.helmignore", "nested/keep.txt"]:
        write(d / f, f"{f}\n")
    write(d / "nested/.helmignore", "keep.txt\n")

    # Negation: Helm ignores everything a negated rule does not match.
    d = base_chart(case("ignore-negated-first"))
    write(d / ".helmignore", "!*.yaml\n")
    write(d / "notes.txt", "x\n")
    d = base_chart(case("ignore-negated-after"))
    write(d / ".helmignore", "*.md\n!README.md\n")
    d = base_chart(case("ignore-negated-dir"))
    write(d / ".helmignore", "!templates/\n")
    d = base_chart(case("ignore-double-star"))
    write(d / ".helmignore", "**/x\n")
    d = base_chart(case("ignore-bad-pattern"))
    write(d / ".helmignore", "[x\n")

    # Chart.yaml written back: quoting, folding, sanitising, key order, unknown keys dropped.
    long = "word " * 30
    d = base_chart(case("chart-yaml-rewrite"), chart_yaml=textwrap.dedent(f"""\
        apiVersion: v2
        name: rewrite
        version: "0.2.0-rc.1+build.5"
        appVersion: 1.10
        description: "tab\\there, a long one: {long}end"
        keywords: [yes, "no", 1e3, 0x1F, ~, 2024-01-01, "a: b", "#x", "it's"]
        home: https://example.org/a b
        kubeVersion: ">=1.20.0-0"
        deprecated: true
        unknownKey: dropped
        annotations:
          multi: |
            line one
            line two
          keep: |+
            kept

          strip: |-
            no newline
          spaced: " lead and trail "
          "10": ten
          "9": nine
          b: "1:20"
          a: "<<"
          unicode: "é ✓ \\u00a0 nbsp"
          control: "bell\\a"
        maintainers:
          - name: Some One
            email: one@example.org
          - {{}}
        sources: [https://example.org/src]
        type: application
        """))

    # The YAML writer's corners: long and multi-line keys, every scalar style, folding, odd
    # characters, numbers in import-values, a lock with an offset time.
    odd_values = ["---x", "- x", "? x", ": x", "x #y", "x:", "%x", "@x", "null", "~", "1.0",
                  "0x10", "1_000", "+1", ".5", "1e3", "0o17", "0b101", "12:30:45", "y", "Y",
                  "on", "OFF", ".inf", ".NaN", "tab\tend\t", "a\u2028b", "nel\u0085x",
                  "emoji \U0001F600", "\ufeffbom", "lead\n  indented", " x\ny",
                  "space \nbreak", "x\n\n\n", "\n", "-", "- ", "'q'", "\"dq\"", "a\\b",
                  "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5", "=", "<<",
                  "long " * 25 + "x\\y \"q\" end", " " + "lead " * 25, "x" * 100,
                  "word " * 20 + "  two  spaces  " + "word " * 10]
    ann = "\n".join(f"  k{i:02d}: {yaml_quoted(v)}" for i, v in enumerate(odd_values))
    long_key = "k" * 130
    d = base_chart(case("yaml-edge"), chart_yaml=(
        "apiVersion: v2\nname: edge\nversion: 1.0.0\n"
        f"annotations:\n{ann}\n  {long_key}: long key\n  \"multi\\nline key\": v\n"
        "  \"\": empty key\n  \"a b\": spaced key\n  \"yes\": bool key\n"
        "dependencies:\n  - name: sub\n    import-values: [1e-7, 123456789.5, 1e21, 0.1, 12345678901234567890,"
        " -3, true, null, {b: [1, {c: []}], a: {}}, [[x]]]\n"))
    base_chart(d / "charts/sub", "sub")
    write(d / "Chart.lock", "dependencies:\n- name: sub\n  version: 1.0.0\n  repository: \"\"\n"
          "digest: sha256:1\ngenerated: 2021-06-01T10:00:00.5+02:00\n")

    # Dependencies: as a package and as a directory, with Chart.lock, prov and skipped names.
    d = base_chart(case("deps-tgz-and-dir"), chart_yaml=textwrap.dedent("""\
        apiVersion: v2
        name: parent
        version: 1.0.0
        dependencies:
          - name: dirdep
            version: ">=0.1.0"
            condition: dirdep.enabled
            tags: [a]
            import-values: [{child: x, parent: y}, data, 1, 2.5]
          - name: tgzdep
            version: 0.3.0
            repository: https://example.org/charts
            alias: tgz_alias
        """))
    write(d / "Chart.lock", "dependencies:\n- name: tgzdep\n  repository: https://example.org/charts"
          "\n  version: 0.3.0\ndigest: sha256:abc\ngenerated: \"2023-02-28T10:50:40.8123500Z\"\n")
    dep = d / "charts/dirdep"
    base_chart(dep, "dirdep")
    write(dep / "charts/inner/Chart.yaml", "apiVersion: v1\nname: inner\nversion: 0.0.1\n")
    write(dep / "charts/inner/values.yaml", "i: 1\n")
    write(dep / ".helmignore", "README.md\n")  # a subchart's .helmignore is not applied
    write(d / "charts/_skipped/Chart.yaml", "not: a chart\n")
    write(d / "charts/.hidden", "x\n")
    write(d / "charts/tgzdep-0.3.0.tgz.prov", "provenance\n")
    cases["deps-tgz-and-dir"]["tgz_dep"] = ("tgzdep", "0.3.0", d / "charts")

    # A dependency directory symlinked from a sibling chart (the site's kafka-dev pattern),
    # allowed because the walk root is the charts tree.
    sib = base_chart(syn / "sibling", "sibling")
    d = base_chart(case("deps-symlinked-dir", walk_root=syn), chart_yaml=(
        "apiVersion: v2\nname: linker\nversion: 1.0.0\ndependencies:\n"
        "  - name: sibling\n    version: 0.1.0\n    condition: sibling.enabled\n"))
    (d / "charts").mkdir()
    (d / "charts/sibling").symlink_to(Path("../..") / sib.name)

    d = base_chart(case("missing-dependency"), chart_yaml=(
        "apiVersion: v2\nname: lonely\nversion: 1.0.0\ndependencies:\n"
        "  - name: absent\n    version: 1.0.0\n    repository: https://example.org\n"))
    d = base_chart(case("stray-file-in-charts"))
    write(d / "charts/README.md", "not a chart\n")

    # v1 chart with requirements.yaml / requirements.lock.
    d = base_chart(case("v1-requirements"), chart_yaml="name: old\nversion: 1.2.3\n")
    write(d / "requirements.yaml", "dependencies:\n- name: sub\n  version: 0.1.0\n"
          "  repository: https://example.org\n")
    write(d / "requirements.lock", "dependencies: []\ndigest: x\ngenerated: 2020-01-01T00:00:00Z\n")
    base_chart(d / "charts/sub", "sub")

    # Invalid Chart.yaml: each refused by Helm.
    for name, text in {
        "invalid-no-version": "apiVersion: v2\nname: a\n",
        "invalid-no-name": "apiVersion: v2\nversion: 1.0.0\n",
        "invalid-semver": "apiVersion: v2\nname: a\nversion: one\n",
        "invalid-type": "apiVersion: v2\nname: a\nversion: 1.0.0\ntype: plugin\n",
        "invalid-api-version": "apiVersion: v9\nname: a\nversion: 1.0.0\n",
        "invalid-api-v3": "apiVersion: v3\nname: a\nversion: 1.0.0\n",
        "invalid-yaml": "apiVersion: v2\nname: [a\n",
        "invalid-name-slash": "apiVersion: v2\nname: a/b\nversion: 1.0.0\n",
        "invalid-alias": "apiVersion: v2\nname: a\nversion: 1.0.0\ndependencies:\n"
                         "  - {name: d, alias: 'bad alias'}\n",
        "invalid-field-type": "apiVersion: v2\nname: a\nversion: 1.0.0\nkeywords: notalist\n",
        # Go's JSON leaves DEL raw and go-yaml refuses to read it back: Helm cannot save it.
        "invalid-del-annotation": "apiVersion: v2\nname: a\nversion: 1.0.0\n"
                                  "annotations: {a: \"del\\u007F\"}\n",
    }.items():
        base_chart(case(name), chart_yaml=text)
    d = base_chart(case("invalid-values"))
    write(d / "values.yaml", "- a list\n")
    d = base_chart(case("invalid-schema"))
    write(d / "values.schema.json", "{not json")
    d = base_chart(case("no-chart-yaml"))
    (d / "Chart.yaml").unlink()

    # Symlinks: a loop, a self loop, a link within the chart, a link out of it.
    d = base_chart(case("symlink-loop"))
    (d / "templates/up").symlink_to("..")
    d = base_chart(case("symlink-self"))
    (d / "self").symlink_to("self")
    d = base_chart(case("symlink-inside"))
    write(d / "real/file.txt", "real\n")
    (d / "linked").symlink_to("real")
    (d / "templates/linked.yaml").symlink_to("cm.yaml")
    d = base_chart(case("symlink-outside-allowed", allow=True))
    (d / "hostname").symlink_to("/etc/hostname")
    d = base_chart(case("symlink-outside-refused", refused_by_us_only=True))
    (d / "hostname").symlink_to("/etc/hostname")

    # Odd files: BOM, schema, long and odd names, a huge file, a FIFO.
    d = base_chart(case("odd-files"))
    write(d / "values.yaml", b"\xef\xbb\xbfa: 1\n---\nb: 2\n")
    write(d / "values.schema.json", '{"type": "object"}\n')
    write(d / "templates/NOTES.txt", b"\xef\xbb\xbfnotes\n")
    write(d / ("files/" + "x" * 90 + "/" + "y" * 60 + ".txt"), "long\n")
    write(d / ("files/" + "z" * 120 + "/" + "w" * 140 + ".txt"), "longer\n")
    write(d / "files/ctl\x01name\ttab.txt", "ctl\n")
    write(d / "files/ünï.txt", "utf8\n")
    write(d / "empty.txt", "")
    d = base_chart(case("huge-file"))
    with open(d / "big.bin", "wb") as f:
        f.truncate(5 * 1024 * 1024 + 1)
    d = base_chart(case("fifo"))
    os.mkfifo(d / "pipe")
    return cases


def members(path: str | Path) -> dict[str, bytes]:
    with tarfile.open(path) as t:
        out = {}
        for m in t.getmembers():
            assert m.isfile(), f"{m.name}: not a regular file entry"
            data = t.extractfile(m).read()
            assert m.name not in out, f"duplicate member {m.name}"
            out[m.name] = data
        return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("package-eq")
    cases = make_cases(root)
    binary = package_bin()
    jobs = []
    ours: dict[str, dict] = {}
    for name, c in cases.items():
        if "tgz_dep" in c:
            # A dependency shipped as a package, made by Helm itself.
            dep_name, dep_version, dest = c["tgz_dep"]
            src = root / "tgzsrc" / dep_name
            base_chart(src, dep_name, f"apiVersion: v2\nname: {dep_name}\nversion: {dep_version}\n"
                       "description: packaged dependency\n")
            write(src / "templates/_helpers.tpl", "{{- define \"x\" -}}x{{- end -}}\n")
            run_helm_script([{"case": "tgz", "dir": str(src), "dest": str(dest)}], root)
        out = root / "ours" / name
        out.mkdir(parents=True)
        args = [str(binary), str(c["dir"]), str(out), "--mtime", "1700000000"]
        if c.get("walk_root"):
            args += ["--walk-root", str(c["walk_root"])]
        if c.get("allow"):
            args.append("--allow-outside-symlinks")
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)
        res = {"rc": r.returncode, "stderr": r.stderr, "tgz": r.stdout.strip() or None}
        if r.returncode == 0:
            # Packaging twice gives the same bytes.
            again = root / "ours-again" / name
            again.mkdir(parents=True)
            r2 = subprocess.run(args[:2] + [str(again)] + args[3:], capture_output=True,
                                text=True, timeout=120)
            res["again"] = r2.stdout.strip()
        ours[name] = res
        helm_dest = root / "helm" / name
        helm_dest.mkdir(parents=True)
        jobs.append({"case": name, "dir": str(c["dir"]), "dest": str(helm_dest),
                     "ours": res["tgz"] if r.returncode == 0 else None})
    helm = run_helm_script(jobs, root)
    return cases, ours, helm


def run_helm_script(jobs: list[dict], root: Path) -> dict:
    script = root / "helm_package_worker.py"
    script.write_text(HELM_SCRIPT)
    jobs_file = root / f"jobs-{len(list(root.iterdir()))}.json"
    out_file = jobs_file.with_suffix(".out.json")
    jobs_file.write_text(json.dumps(jobs))
    env = dict(os.environ)
    for k in ("HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"):
        env[k] = str(root / "helm-home" / k.lower())
    r = subprocess.run([sys.executable, str(script), str(jobs_file), str(out_file)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert out_file.exists(), f"helm worker failed: {r.stdout[-2000:]} {r.stderr[-2000:]}"
    return json.loads(out_file.read_text())


CASES_REFUSED = {
    "ignore-negated-after",  # everything ignored: no Chart.yaml
    "ignore-negated-dir",  # a negated directory rule ignores every file
    "ignore-double-star",
    "ignore-bad-pattern",
    "missing-dependency",
    "stray-file-in-charts",
    "invalid-no-version",
    "invalid-no-name",
    "invalid-semver",
    "invalid-type",
    "invalid-api-version",
    "invalid-api-v3",
    "invalid-yaml",
    "invalid-name-slash",
    "invalid-alias",
    "invalid-field-type",
    "invalid-del-annotation",
    "invalid-values",
    "invalid-schema",
    "no-chart-yaml",
    "symlink-loop",
    "symlink-self",
    "huge-file",
    "fifo",
}

ALL_CASES = [f"wikimedia-{n}" for n in WIKIMEDIA] + [
    "ignore-rules",
    "ignore-negated-first",
    "chart-yaml-rewrite",
    "yaml-edge",
    "deps-tgz-and-dir",
    "deps-symlinked-dir",
    "v1-requirements",
    "symlink-inside",
    "symlink-outside-allowed",
    "odd-files",
] + sorted(CASES_REFUSED) + ["symlink-outside-refused"]


@pytest.mark.parametrize("case", ALL_CASES)
def test_package_equivalence(results, case):
    cases, ours, helm = results
    o, h = ours[case], helm[case]
    if case == "symlink-outside-refused":
        # Helm follows the link out of the chart; chartroom refuses it by default.
        assert "helm_tgz" in h, h
        assert o["rc"] != 0 and "outside" in o["stderr"], o
        return
    if case in CASES_REFUSED:
        assert "helm_error" in h, f"Helm packaged {case}: {h.get('helm_tgz')}"
        assert o["rc"] != 0, f"chartroom packaged {case}, Helm refused: {h['helm_error']}"
        assert o["stderr"].strip(), "the refusal says why"
        return
    assert "helm_error" not in h, h.get("helm_error")
    assert o["rc"] == 0, o["stderr"]
    # Same file name.
    assert Path(o["tgz"]).name == Path(h["helm_tgz"]).name
    # Loaded back by Helm: the same chart.
    assert "ours_load_error" not in h, h.get("ours_load_error")
    assert h["ours_chart"] == h["helm_chart"]
    # The raw members: same names, same bytes.
    hm, om = members(h["helm_tgz"]), members(o["tgz"])
    assert sorted(om) == sorted(hm)
    for name in hm:
        assert om[name] == hm[name], f"{name}:\nhelm: {hm[name][:800]!r}\nours: {om[name][:800]!r}"
    # Deterministic: the same bytes again, fixed modes, owners and times.
    assert Path(o["again"]).read_bytes() == Path(o["tgz"]).read_bytes()
    with tarfile.open(o["tgz"]) as t:
        for m in t.getmembers():
            assert (m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime) == (
                0o644, 0, 0, "", "", 1700000000), m.name
    raw = Path(o["tgz"]).read_bytes()
    assert raw[4:8] == b"\0\0\0\0", "gzip header has no timestamp"
    assert raw[3] & 0x08 == 0, "gzip header has no file name"
