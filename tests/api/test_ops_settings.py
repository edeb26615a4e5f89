"""Settings: flags over environment over file over defaults; a bad or unknown one stops start-up naming it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanwang.cli.main import app
from suanwang.settings import AgentSettings, PlatformSettings, SettingsError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level  # commands configure logging; leave the test process's as it was
    for name in ("SUANWANG_DATABASE_URL", "SUANWANG_CONFIG", "SUANWANG_LEASE_S", "SUANWANG_PORT", "SUANWANG_URL",
                 "SUANWANG_AGENT_TOKEN", "SUANWANG_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "suanwang.toml"
    f.write_text('lease_s = 20.0\nport = 9000\ntick_s = 0.25\ndatabase_url = "sqlite:///x.db"\n')
    monkeypatch.setenv("SUANWANG_PORT", "9100")
    s = PlatformSettings.load(settings_file=f, lease_s=30.0, port=None)
    assert (s.lease_s, s.port, s.tick_s, s.host) == (30.0, 9100, 0.25, "127.0.0.1")
    assert s.loop().site_timeout_s == 60.0 and s.resolved_database_url() == "sqlite:///x.db"


def test_yaml_file_named_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "suanwang.yaml"
    f.write_text("url: https://grid.example.cn/\nagent_token: sw_abc\nmax_tasks: 8\nlog_level: debug\n")
    monkeypatch.setenv("SUANWANG_CONFIG", str(f))
    s = AgentSettings.load()
    assert (s.url, s.agent_token, s.max_tasks, s.log_level) == ("https://grid.example.cn", "sw_abc", 8, "DEBUG")
    assert "sw_abc" not in repr(s)


@pytest.mark.parametrize(("source", "message"), [
    ({"flag": {"lease_s": float("nan")}}, "setting lease_s (from --lease-s): Input should be a finite number"),
    ({"env": ("SUANWANG_LEASE_S", "1e999999")}, "setting lease_s (from SUANWANG_LEASE_S)"),
    ({"env": ("SUANWANG_PORT", "70000")}, "setting port (from SUANWANG_PORT): Input should be less than or equal"),
    ({"file": "leese_s = 3\n"}, "setting leese_s (from "),
    ({"file": "tick_s = -1\n"}, "setting tick_s (from "),
    ({"file": 'log_format = "xml"\n'}, "setting log_format"),
    ({"file": 'database_url = "/var/lib/db"\n'}, "expected a URL"),
])
def test_bad_settings_name_the_setting_and_its_source(source: dict, message: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "s.toml"
    f.write_text(source.get("file", ""))
    if "env" in source:
        monkeypatch.setenv(*source["env"])
    with pytest.raises(SettingsError, match="bad settings") as exc:
        PlatformSettings.load(settings_file=f, **source.get("flag", {}))
    assert message in str(exc.value)
    if "file" in source and "leese_s" in source["file"]:
        assert "unknown setting" in str(exc.value)


def test_an_unreadable_or_malformed_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"nothing\.toml"):
        PlatformSettings.load(settings_file=tmp_path / "nothing.toml")
    (tmp_path / "bad.toml").write_text("port = = 3")
    with pytest.raises(SettingsError, match="does not parse"):
        PlatformSettings.load(settings_file=tmp_path / "bad.toml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SettingsError, match="table"):
        PlatformSettings.load(settings_file=tmp_path / "list.yaml")


def test_commands_stop_at_start_with_the_bad_setting(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--data-dir", str(tmp_path), "--lease-s", "-5"])
    assert r.exit_code == 2
    assert "setting lease_s (from --lease-s)" in r.output
    r = runner.invoke(app, ["agent", "--url", "ftp://x"], env={"SUANWANG_AGENT_TOKEN": "t"})
    assert r.exit_code == 2 and "setting url (from --url)" in r.output
    r = runner.invoke(app, ["agent", "--url", "http://x"])
    assert r.exit_code == 2 and "agent_token is missing: pass --token or set SUANWANG_AGENT_TOKEN" in r.output


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path), "--log-format", "plain"])
    assert r.exit_code == 3
    assert "run `suanwang migrate`" in r.output


def test_the_market_schedule_is_a_setting_and_defaults_to_production(monkeypatch: pytest.MonkeyPatch) -> None:
    from suanwang.domain.market.session import DEFAULT_SCHEDULE, Schedule

    assert PlatformSettings.load().loop().market == ()  # production's schedule
    assert Schedule(**dict(PlatformSettings.load().loop().market)) == DEFAULT_SCHEDULE
    monkeypatch.setenv("SUANWANG_MARKET_INTRADAY_EVERY_S", "10")
    monkeypatch.setenv("SUANWANG_MARKET_INTRADAY_SLOT_S", "120")
    loop = PlatformSettings.load(market_intraday_slots=1).loop()
    assert Schedule(**dict(loop.market)) == Schedule(intraday_every_s=10, intraday_slot_s=120, intraday_slots=1)
    for name, value in (("market_da_slot_s", 7), ("market_intraday_every_s", 0), ("market_intraday_slots", 10**6)):
        with pytest.raises(SettingsError, match=name):
            PlatformSettings.load(**{name: value})
