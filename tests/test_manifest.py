"""Manifest errors are one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaps.manifest import ManifestError, load_manifest, url_manifest
from gaps.targets import builtin_names, resolve

GOOD = """
name = "demo"
[start]
command = ["{python}", "-m", "gaps.reference", "--port", "{port}"]
[endpoints.echo]
path = "/echo"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "target.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_good_manifest_loads(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, GOOD))
    assert manifest.name == "demo"
    assert manifest.endpoints["echo"].path == "/echo"
    assert manifest.placeholders() == {"port"}


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert "colour: unknown key" in error_of(tmp_path, GOOD + 'colour = "red"\n')


def test_unknown_nested_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace('path = "/echo"', 'path = "/echo"\npaht = "/x"'))
    assert "endpoints.echo.paht: unknown key" in message


def test_missing_echo(tmp_path: Path) -> None:
    text = GOOD.replace("[endpoints.echo]", "[endpoints.chat]")
    assert "endpoints.echo: missing" in error_of(tmp_path, text)


def test_unknown_placeholder(tmp_path: Path) -> None:
    text = GOOD.replace('"{port}"]', '"{prot}"]')
    assert "start.command: unknown placeholder {prot}" in error_of(tmp_path, text)


def test_unknown_hint_and_bad_value(tmp_path: Path) -> None:
    assert "hints.ping_intervall: unknown key" in error_of(
        tmp_path, GOOD + "[hints]\nping_intervall = 1\n")
    assert "hints.ping_interval: must be a non-negative number" in error_of(
        tmp_path, GOOD + '[hints]\nping_interval = "soon"\n')


def test_declared_needs_known_check_and_source(tmp_path: Path) -> None:
    assert "declared.heartbeat.nope: unknown check ID" in error_of(
        tmp_path, GOOD + '[declared."heartbeat.nope"]\nverdict = "pass"\nsource = "x"\n')
    assert "declared.concurrency.documented.source: missing" in error_of(
        tmp_path, GOOD + '[declared."concurrency.documented"]\nverdict = "pass"\n')


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid TOML" in error_of(tmp_path, "name = \n")
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "nope.toml")


def test_room_endpoint_needs_placeholder(tmp_path: Path) -> None:
    assert "{room} placeholder" in error_of(tmp_path, GOOD + '[endpoints.room]\npath = "/room"\n')


def test_url_targets_and_resolution() -> None:
    manifest = url_manifest("ws://127.0.0.1:9001/echo")
    assert not manifest.managed
    assert manifest.endpoints["echo"].url == "ws://127.0.0.1:9001/echo"
    assert resolve("ws://127.0.0.1:9001/echo").name == "127.0.0.1-9001"
    with pytest.raises(ManifestError, match="not a built-in target"):
        resolve("no-such-target")
    assert "reference" in builtin_names()


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_manifests_load(name: str) -> None:
    assert resolve(name).name == name


def test_absent_names_a_known_capability(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD + '[absent]\nheartbaet = "typo"\n')
    assert "absent.heartbaet" in message and "unknown capability" in message
    assert load_manifest(write(tmp_path, GOOD + '[absent]\nrecovery = "no client"\n')).absent


def test_start_imports_are_module_names_and_skip_where_not_installed(tmp_path: Path) -> None:
    from gaps.targets import TargetSkipped, run_build

    with_imports = GOOD.replace('"{port}"]', '"{port}"]\nimports = ["websockets", "IMPORT"]')
    assert "start.imports: 'no-such' is not a Python module name" in error_of(
        tmp_path, with_imports.replace("IMPORT", "no-such"))
    manifest = load_manifest(write(tmp_path, with_imports.replace("IMPORT", "wsgaps_nothing")))
    assert manifest.start.imports == ("websockets", "wsgaps_nothing")
    # A user's own manifest: the reason, without the built-in targets' pip hint.
    with pytest.raises(TargetSkipped) as info:
        run_build(manifest)
    assert str(info.value) == "wsgaps_nothing is not installed in this environment"
    assert info.value.build == "none"
    manifest = load_manifest(write(tmp_path, with_imports.replace("IMPORT", "gaps.reference")))
    assert run_build(manifest) == "none"


def test_build_paths_stay_inside_the_folder_and_start_cost_is_seconds(tmp_path: Path) -> None:
    build = '\n[build]\ncommand = ["make"]\n'
    assert "build.inputs: '../x' must be a relative path" in error_of(
        tmp_path, GOOD + build + 'inputs = ["../x"]\n')
    assert "build.outputs: '/abs' must be a relative path" in error_of(
        tmp_path, GOOD + build + 'outputs = ["/abs"]\n')
    assert "build.exclude: 'a/b' must be a name at the top" in error_of(
        tmp_path, GOOD + build + 'exclude = ["a/b"]\n')
    assert "start.cost: must be a non-negative number" in error_of(
        tmp_path, GOOD.replace("[endpoints.echo]", 'cost = "slow"\n[endpoints.echo]'))
    manifest = load_manifest(write(tmp_path, GOOD.replace("[endpoints.echo]",
                                                          "cost = 2.5\n[endpoints.echo]")
                                   + build + 'inputs = ["src"]\nexclude = [".gradle"]\n'))
    assert manifest.start_cost == 2.5
    assert manifest.build and manifest.build.exclude == (".gradle",)


PROBE_WITH_A_KEY = '''
from gaps.probe import check, manifest_key, passed


def read_docs(r, value, fieldname):
    url = r.string(value, fieldname)
    if not url.startswith("https://"):
        raise r.fail(fieldname, "must be an https:// URL")
    return url


DOCS = manifest_key("metrics", "docs", read_docs, "where the stack documents its metrics")


@check("metrics.connections-gauge")
async def gauge(ctx):
    return passed(DOCS.value(ctx.manifest) or "no docs")
'''

WITH_METRICS = GOOD + '''
[endpoints.metrics]
url = "http://127.0.0.1:{port}/metrics"
docs = "DOCS"
'''


def test_a_probe_declares_its_own_manifest_keys(tmp_path: Path) -> None:
    """A key a probe reads is declared beside its checks and validated by its reader; the
    built-in probes do not know it, so a manifest using it needs that probe's keys."""
    from gaps.probe import ProbeError, load_keys

    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "metrics.py").write_text(PROBE_WITH_A_KEY)
    keys = load_keys(str(probes))
    assert [(k.endpoint, k.name, k.owner) for k in keys] == [("metrics", "docs", "metrics")]
    path = write(tmp_path, WITH_METRICS.replace("DOCS", "https://example.org/metrics"))
    manifest = load_manifest(path, keys=keys)
    assert keys[0].value(manifest) == "https://example.org/metrics"
    assert manifest.endpoints["metrics"].extra == {"docs": "https://example.org/metrics"}
    with pytest.raises(ManifestError, match=r"endpoints\.metrics\.docs: must be an https"):
        load_manifest(write(tmp_path, WITH_METRICS.replace("DOCS", "ftp://x")), keys=keys)
    unknown = error_of(tmp_path, WITH_METRICS.replace("DOCS", "https://example.org/metrics"))
    assert "endpoints.metrics.docs: unknown key" in unknown  # the built-in probes' keys only
    (probes / "other.py").write_text(PROBE_WITH_A_KEY.replace("metrics.connections-gauge",
                                                              "heartbeat.server-pings"))
    with pytest.raises(ProbeError, match="declared by both metrics and other"):
        load_keys(str(probes))


def test_a_key_is_declared_for_a_contract_endpoint_and_only_once() -> None:
    from gaps.probe import manifest_key

    with pytest.raises(KeyError, match="not an endpoint"):
        manifest_key("metric", "docs", lambda r, v, f: v, "typo")
    with pytest.raises(KeyError, match="every endpoint already"):
        manifest_key("chat", "path", lambda r, v, f: v, "a core key")
