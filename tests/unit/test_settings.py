"""Option resolution: precedence (CLI > env > ini > default), parsers, secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import ConfigError, redact
from comfytest.plugin.settings import OPTIONS, Option, resolve

ROOT = Path("/project")


def settings(cli: dict[str, Any] | None = None, ini: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Any:
    cli, ini = cli or {}, ini or {}
    return resolve(lambda o: cli.get(o.name), lambda o: ini.get(o.name, ""), ROOT, env or {})


@pytest.mark.parametrize(
    ("cli", "env", "ini", "expected", "source"),
    [
        ("http://cli:1", "http://env:2", "http://ini:3", "http://cli:1", "--comfy-url"),
        (None, "http://env:2", "http://ini:3", "http://env:2", "COMFYUI_URL"),
        (None, None, "http://ini:3", "http://ini:3", "ini comfy_url"),
        (None, None, None, None, "default"),
    ],
)
def test_url_precedence(cli: str | None, env: str | None, ini: str | None, expected: str | None, source: str) -> None:
    s = settings({"url": cli} if cli else {}, {"url": ini} if ini else {}, {"COMFYUI_URL": env} if env else {})
    assert s.url == expected and s.url_source == source


@pytest.mark.parametrize(
    ("name", "cli", "ini", "attr", "expected"),
    [
        ("tolerance", 5, "3", "tolerance", 5),
        ("tolerance", None, "3", "tolerance", 3),
        ("tolerance", None, None, "tolerance", 2),
        ("timeout", None, "12.5", "timeout", 12.5),
        ("update-baselines", None, "true", "update_baselines", True),
        ("update-baselines", None, None, "update_baselines", False),
        ("baselines", None, "golden", "baselines", ROOT / "golden"),
        ("results", "/abs/out", "x", "results", Path("/abs/out")),
        ("launch-args", None, "--cpu --lowvram", "launch_args", ("--cpu", "--lowvram")),
    ],
)
def test_cli_beats_ini_beats_default(name: str, cli: Any, ini: Any, attr: str, expected: Any) -> None:
    s = settings({name: cli} if cli is not None else {}, {name: ini} if ini is not None else {})
    assert getattr(s, attr) == expected


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("url", "localhost:8188", "is not an http(s) URL; expected e.g. http://127.0.0.1:8188"),
        ("tolerance", "-1", "must be 0 or more"),
        ("hash", "md5", "is not one of: phash, dhash, ahash, whash, colorhash"),
        ("missing", "ignore", "is not one of: fail, skip"),
        ("update-baselines", "perhaps", "expected true or false"),
    ],
)
def test_bad_ini_values_name_the_key_and_the_fix(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(ini={name: value})
    assert fragment in str(err.value) and ("comfy_" + name.replace("-", "_")) in str(err.value)


def test_headers_expand_env_and_are_secrets() -> None:
    s = settings(cli={"header": [("X-Api-Key", "$KEY")], "token-env": "TOKEN"}, env={"KEY": "k-123", "TOKEN": "t-456"})
    assert s.headers == {"X-Api-Key": "k-123", "Authorization": "Bearer t-456"}
    out = redact("sent k-123 and Bearer t-456; token t-456", s.secrets)
    assert "k-123" not in out and "t-456" not in out and out.startswith("sent *** and")
    assert "k-123" not in repr(s)


def test_missing_token_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="environment variable NOPE is not set"):
        settings(cli={"token-env": "NOPE"})


def test_url_and_launch_together_is_an_error() -> None:
    with pytest.raises(ConfigError, match="choose one"):
        settings(cli={"url": "http://a:1", "launch": "/x"})


def test_every_option_has_a_cli_flag_ini_key_and_help() -> None:
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    assert all(isinstance(o, Option) and o.cli.startswith("--comfy-") and o.ini.startswith("comfy_") and o.help for o in OPTIONS)


# -- issue 11: folders that would lose baselines, the CA bundle


@pytest.mark.parametrize(("results", "baselines"), [("b", "b"), ("b/results", "b"), (".", "baselines"), ("out", "out/base")])
def test_overlapping_results_and_baselines_is_a_usage_error(results: str, baselines: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings({"results": results, "baselines": baselines})
    text = str(err.value)
    assert "overlap" in text and "--comfy-results" in text and "would delete baselines" in text


def test_ca_bundle_from_cli_env_or_ini_must_exist(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert settings({"ca-bundle": str(pem)}).ca_bundle == pem
    assert settings(env={"COMFYTEST_CA_BUNDLE": str(pem)}).ca_bundle == pem
    assert settings(ini={"ca-bundle": str(pem)}).ca_bundle == pem
    with pytest.raises(ConfigError, match=r"COMFYTEST_CA_BUNDLE .*no such file"):
        settings(env={"COMFYTEST_CA_BUNDLE": str(tmp_path / "missing.pem")})


# --- several servers, order, shards (issue 9)


def test_several_urls_from_cli_ini_and_env() -> None:
    assert settings({"url": ["http://a:1", "http://b:2"]}).urls == ("http://a:1", "http://b:2")
    assert settings(ini={"url": ["http://a:1", "http://b:2"]}).urls == ("http://a:1", "http://b:2")
    s = settings(env={"COMFYUI_URL": "http://a:1, http://b:2"})
    assert s.urls == ("http://a:1", "http://b:2") and s.url == "http://a:1"


def test_a_url_listed_twice_is_one_error_naming_it() -> None:
    with pytest.raises(ConfigError) as err:
        settings(ini={"url": ["http://u:secret@a:1", "http://b:2", "http://U:secret@A:1/"]})
    assert "ini comfy_url: the server URL http://A:1 is listed twice; list each server once" in str(err.value)
    assert "secret" not in str(err.value)


@pytest.mark.parametrize(
    ("cli", "fragment"),
    [
        ({"gpus": ("0", "1")}, "--comfy-gpus starts your ComfyUI once per GPU: it needs --comfy-launch DIR"),
        ({"gpus": ("0", "1"), "launch": "/c", "servers": 3}, "--comfy-gpus lists 2 GPU(s) but --comfy-servers is 3"),
        ({"url": ["http://a:1"], "servers": 2}, "with --comfy-url list every server URL instead"),
    ],
)
def test_server_count_conflicts(cli: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(cli)
    assert fragment in str(err.value)


def test_gpus_make_one_server_each() -> None:
    s = settings({"gpus": ("0", "1"), "launch": "/c"})
    assert s.gpus == ("0", "1") and s.servers == 2


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("gpus", "0,1,0", "lists GPU 0 twice"),
        ("gpus", ",", "names no GPU"),
        ("shard", "3/2", "expected i/N with 1 <= i <= N"),
        ("shard", "0/2", "expected i/N with 1 <= i <= N"),
        ("order", "random", "is not one of: models, file"),
        ("servers", "0", "must be 1 or more"),
    ],
)
def test_bad_scale_out_values(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(ini={name: value})
    assert fragment in str(err.value)


def test_shard_and_order_values() -> None:
    s = settings(ini={"shard": " 2 / 4 ", "order": "file"})
    assert s.shard == (2, 4) and s.order == "file"
    assert settings().order == "models" and settings().shard is None


def test_docs_options_md_is_what_the_option_table_generates() -> None:
    """docs/options.md is generated from OPTIONS; regenerate it when an option changes."""
    from pathlib import Path

    from comfytest.plugin.settings import reference_markdown

    committed = (Path(__file__).parents[2] / "docs" / "options.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), (
        "docs/options.md is stale: run `python -m comfytest.plugin.settings > docs/options.md`")
    for opt in OPTIONS:
        assert f"`{opt.cli}" in committed and f"`{opt.ini}`" in committed
