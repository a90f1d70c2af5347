"""The deployment files agree with the code: .env.example, docker-compose.yml, the Temporal setup script."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from pydantic import AliasChoices

from domain.search_attributes import KEYWORD_ATTRIBUTES
from plumbing.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_FILE = ROOT / "docker-compose.yml"
SA_SCRIPT = ROOT / "deploy" / "temporal" / "register-search-attributes.sh"

# Variables in .env.example that docker-compose.yml reads but Waybill itself does not.
COMPOSE_ONLY = {
    "POSTGRES_PASSWORD",
    "MONGO_PASSWORD",
    "REDIS_PASSWORD",
    "WAYBILL_IMAGE",
    "TEMPORAL_NUM_HISTORY_SHARDS",
    "TEMPORAL_RETENTION",
    "GRAFANA_ADMIN_PASSWORD",
}
# Settings that docker-compose.yml deliberately does not pass: the image fixes the data dir, and
# the bundled dev server never runs there (TEMPORAL_ADDRESS is set).
NOT_IN_COMPOSE = {"WAYBILL_DATA_DIR", "WAYBILL_TEMPORAL_DEV_PORT", "WAYBILL_TEMPORAL_UI_PORT"}


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    return f"WAYBILL_{field.upper()}"


SETTINGS_VARS = {env_name(field): field for field in Settings.model_fields}


def example_assignments() -> dict[str, str]:
    """`NAME=value` lines of .env.example, commented out or not (first occurrence wins)."""
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^#?\s?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            found.setdefault(m.group(1), m.group(2))
    return found


def test_every_setting_is_in_env_example() -> None:
    documented = example_assignments()
    missing = sorted(set(SETTINGS_VARS) - set(documented))
    assert not missing, f".env.example lacks {missing}"


def test_env_example_names_only_real_variables() -> None:
    unknown = sorted(set(example_assignments()) - set(SETTINGS_VARS) - COMPOSE_ONLY)
    assert not unknown, f".env.example documents variables nobody reads: {unknown}"


# Fields with a plain default; the others (unset store URLs, factories) are described in prose.
PLAIN_DEFAULTS = {
    var: str(info.default)
    for var, info in ((var, Settings.model_fields[field]) for var, field in SETTINGS_VARS.items())
    if info.default_factory is None and info.default is not None
}


@pytest.mark.parametrize("var", sorted(PLAIN_DEFAULTS))
def test_env_example_shows_the_real_default(var: str) -> None:
    assert example_assignments()[var] == PLAIN_DEFAULTS[var]


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def _compose_config(tmp_path: Path, jwt_keys: str | None) -> subprocess.CompletedProcess[str]:
    command = _compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    empty_env_file = tmp_path / "empty.env"  # so a developer's ./.env does not change the outcome
    empty_env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "WAYBILL_JWT_KEYS"}
    if jwt_keys is not None:
        env["WAYBILL_JWT_KEYS"] = jwt_keys
    return subprocess.run(
        [*command, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_is_valid(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, '{"k1":"x"}')
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_jwt_keys(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, None)
    assert result.returncode != 0
    assert "set WAYBILL_JWT_KEYS" in result.stderr


def _compose_env_block() -> set[str]:
    text = COMPOSE_FILE.read_text()
    block = re.search(r"^x-waybill-env: &waybill-env\n((?:  .*\n|\s*\n)+)", text, re.MULTILINE)
    assert block, "docker-compose.yml has no x-waybill-env block"
    return set(re.findall(r"^  ([A-Z][A-Z0-9_]*):", block.group(1), re.MULTILINE))


def test_compose_passes_every_setting() -> None:
    passed = _compose_env_block()
    missing = sorted(set(SETTINGS_VARS) - NOT_IN_COMPOSE - passed)
    assert not missing, f"docker-compose.yml does not pass {missing} to the Waybill services"
    unknown = sorted(passed - set(SETTINGS_VARS))
    assert not unknown, f"docker-compose.yml passes variables Settings does not read: {unknown}"


def _script_attributes() -> list[str]:
    m = re.search(r'^ATTRIBUTES="([^"]*)"', SA_SCRIPT.read_text(), re.MULTILINE)
    assert m, "register-search-attributes.sh has no ATTRIBUTES= line"
    return m.group(1).split()


def test_search_attribute_script_matches_domain() -> None:
    assert sorted(_script_attributes()) == sorted(KEYWORD_ATTRIBUTES)
    assert "register-search-attributes.sh" in COMPOSE_FILE.read_text()


FAKE_TEMPORAL = """#!/bin/sh
# Stand-in for the `temporal` CLI: enough of `operator namespace|search-attribute` for the script.
case "$2 $3" in
  "namespace describe") exit 0 ;;
  "search-attribute list") cat "$FAKE_SA_LIST" ;;
  "search-attribute create")
    shift 3
    while [ $# -gt 0 ]; do
      if [ "$1" = "--name" ]; then echo "$2" >> "$FAKE_SA_CREATED"; fi
      shift
    done ;;
  *) echo "unexpected: $*" >&2; exit 3 ;;
esac
"""


def _run_script(tmp_path: Path, listed: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    if shutil.which("sh") is None:
        pytest.skip("no POSIX sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "temporal"
    fake.write_text(FAKE_TEMPORAL)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "list.txt").write_text(listed)
    created = tmp_path / "created.txt"
    created.write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_SA_LIST": str(tmp_path / "list.txt"),
        "FAKE_SA_CREATED": str(created),
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "WAIT_SECONDS": "0",
    }
    result = subprocess.run(
        ["sh", str(SA_SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return result, created.read_text().split()


def test_search_attribute_script_creates_only_missing(tmp_path: Path) -> None:
    listed = (
        "  Name  Type\n  WaybillOrganizationId  Keyword\n  WaybillDepotIdOld  Text\n  BuildIds  KeywordList\n"
    )
    result, created = _run_script(tmp_path, listed)
    assert result.returncode == 0, result.stderr
    assert sorted(created) == sorted(set(KEYWORD_ATTRIBUTES) - {"WaybillOrganizationId"})


def test_search_attribute_script_refuses_a_wrong_type(tmp_path: Path) -> None:
    listed = "  Name  Type\n  WaybillVehicleId  Text\n"
    result, created = _run_script(tmp_path, listed)
    assert result.returncode == 1
    assert "WaybillVehicleId exists with another type" in result.stderr
    assert "WaybillVehicleId" not in created
