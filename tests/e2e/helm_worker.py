"""Runs real Helm client operations in a process of its own.

Usage: python helm_worker.py LIB OPS_JSON_FILE RESULT_JSON_FILE

LIB is ``helm_python`` (PyPI helm-python-sdk, Helm v4.2) or ``helm_sdkpy``
(PyPI helm-sdkpy, Helm v4.3). Only one of the two libraries is ever loaded in
one process: both embed a Go runtime, and both read the HELM_* environment
variables only once, when the library starts. The parent therefore sets
HELM_CONFIG_HOME, HELM_CACHE_HOME, HELM_DATA_HOME, HELM_REPOSITORY_CONFIG and
HELM_REPOSITORY_CACHE before starting this script.

OPS_JSON_FILE holds a list of operations ``{"op": NAME, ...arguments}``; they
run in order, and a failing operation does not stop the ones after it. The
result file receives one entry per operation:
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": TEXT, "type": CLASS}``.
Results go to a file, not stdout, because the Go code logs to the standard
streams.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback


def _helm_python_ops():
    import helm_python as helm

    def package(path, destination, version=None, app_version=None):
        return helm.package(path, destination=destination, version=version, app_version=app_version)

    def pull(chart, repo_url, destination, version=None, username=None, password=None):
        return helm.pull(
            chart,
            repo_url=repo_url,
            destination=destination,
            version=version,
            username=username,
            password=password,
        )

    def repo_index(url, username=None, password=None):
        return helm.repo_index(url, username=username, password=password)

    def repo_index_generate(directory, base_url=None):
        return helm.repo_index_generate(directory, base_url=base_url)

    def digest(archive):
        return helm.digest(archive)

    def sign(archive, key, keyring):
        return helm.sign(archive, key=key, keyring=keyring)

    def verify(path, keyring, provenance_file=None):
        return helm.verify(path, keyring, provenance_file=provenance_file)

    def versions():
        return {"helm_sdk": helm.helm_sdk_version(), "helm_c": helm.helm_c_version()}

    return {
        "sign": sign,
        "verify": verify,
        "package": package,
        "pull": pull,
        "repo_index": repo_index,
        "repo_index_generate": repo_index_generate,
        "digest": digest,
        "versions": versions,
    }


def _helm_sdkpy_ops():
    import helm_sdkpy as hs

    config = hs.Configuration()

    def repo_add(name, url, username=None, password=None, ca_file=None, cert_file=None,
                 key_file=None):
        return asyncio.run(hs.RepoAdd(config).run(
            name, url, username=username, password=password,
            ca_file=ca_file, cert_file=cert_file, key_file=key_file))

    def repo_update(name=None):
        return asyncio.run(hs.RepoUpdate(config).run(name))

    def repo_list():
        return asyncio.run(hs.RepoList(config).run())

    def repo_remove(name):
        return asyncio.run(hs.RepoRemove(config).run(name))

    def show_chart(ref):
        # "repo/chart": Helm locates the newest version in the cached index of
        # that repository and downloads it (with the repository's stored
        # credentials) into $HELM_CACHE_HOME/content/<xx>/<sha256>.chart.
        return asyncio.run(hs.Show(config).chart(ref))

    def versions():
        return {"helm_sdkpy": hs.get_version()}

    return {
        "repo_add": repo_add,
        "repo_update": repo_update,
        "repo_list": repo_list,
        "repo_remove": repo_remove,
        "show_chart": show_chart,
        "versions": versions,
    }


def main() -> int:
    lib, ops_file, result_file = sys.argv[1:4]
    with open(ops_file, encoding="utf-8") as handle:
        ops = json.load(handle)
    table = _helm_python_ops() if lib == "helm_python" else _helm_sdkpy_ops()
    results = []
    for op in ops:
        args = dict(op)
        name = args.pop("op")
        try:
            results.append({"ok": True, "result": table[name](**args)})
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            results.append(
                {
                    "ok": False,
                    "type": type(exc).__name__,
                    "error": str(exc),
                    "traceback": traceback.format_exc(),
                }
            )
        # Write after every operation, so a crash of the Go runtime in a later
        # operation still leaves the earlier results readable.
        with open(result_file, "w", encoding="utf-8") as handle:
            json.dump(results, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
