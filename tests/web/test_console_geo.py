"""The grid map: no site drawn at (0, 0) for want of coordinates; the operator's own GeoJSON background,
checked at start-up (size, JSON, GeoJSON) and served from the platform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from suanwang.web import data, geo, session
from tests.api.conftest import Grid

SQUARE = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "x"}, "geometry": {
    "type": "Polygon", "coordinates": [[[100, 30], [110, 30], [110, 40], [100, 40], [100, 30]]]}}]}


def test_a_site_without_coordinates_is_listed_as_location_unknown_and_not_drawn(grid: Grid) -> None:
    grid.register()  # the bootstrap's local site registers with no coordinates
    data._memo.clear()
    c = TestClient(grid.client.app)
    c.cookies.set(session.LANG, "en")
    page = c.get("/").text
    assert "location unknown" in page
    chart = json.loads(page.split('id="grid-data">', 1)[1].split("</script>", 1)[0])
    assert all(s["lat"] or s["lon"] for s in chart["sites"]) and chart["background"] is None
    assert c.get("/map.geojson").status_code == 404


def test_the_operators_geojson_is_served_and_drawn_as_the_background(grid: Grid) -> None:
    body = json.dumps(SQUARE).encode()
    grid.client.app.state.map_geojson = body  # what create_app(map_geojson=geo.load(path)) sets
    c = TestClient(grid.client.app)
    r = c.get("/map.geojson")
    assert r.status_code == 200 and r.content == body and r.headers["content-type"] == "application/geo+json"
    data._memo.clear()
    assert '"background": "/map.geojson"' in c.get("/").text


@pytest.mark.parametrize(("content", "why"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a GeoJSON object"),
    (b'{"type": "FeatureCollection", "features": []}', "non-empty features"),
    (b'{"type": "Polygon", "coordinates": [[[1e999, 0], [1, 1], [0, 0]]]}', "finite numbers"),
    (b'{"type": "Point", "coordinates": [200, 0]}', "outside longitude"),
    (b'{"type": "Hexagon", "coordinates": []}', "unknown geometry type"),
    (b'{"type": "Feature", "geometry": {"type": "Point", "coordinates": "x"}}', "must be arrays"),
    (b"[" * 100_000 + b"]" * 100_000, "not"),
])
def test_a_file_that_is_not_geojson_is_refused_with_the_reason(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "map.json"
    path.write_bytes(content)
    with pytest.raises(geo.BadGeoJson, match=why):
        geo.load(path)


def test_size_limit_and_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps(SQUARE))
    assert json.loads(geo.load(path)) == SQUARE
    monkeypatch.setattr(geo, "MAX_BYTES", 10)
    with pytest.raises(geo.BadGeoJson, match="over the limit"):
        geo.load(path)
    with pytest.raises(geo.BadGeoJson, match="No such file"):
        geo.load(tmp_path / "absent.json")


def test_serve_refuses_to_start_with_a_bad_map_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Feature"}')
    env = {**os.environ, "SUANWANG_MAP_GEOJSON": str(bad)}
    r = subprocess.run([sys.executable, "-m", "suanwang", "serve", "--data-dir", str(tmp_path / "d"), "--migrate"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "setting map_geojson" in r.stderr and "geometry member" in r.stderr
