"""Layout generator and MovingAI loader: geometry and errors naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.layout import LayoutConfig, LayoutError, generate_layout, load_movingai

SMALL_MAP = """type octile
height 6
width 8
map
........
.@@@@@@.
........
.@@..@@.
........
........
"""


def test_layout__default_geometry_is_consistent() -> None:
    lay = generate_layout(LayoutConfig())
    assert lay.occupancy[0].all() and lay.occupancy[-1].all() and lay.occupancy[:, 0].all()
    assert not (lay.shelves & ~lay.occupancy).any()
    assert lay.is_free(lay.stations).all() and lay.is_free(lay.pick_points).all()
    d = np.abs(lay.pick_points - lay.pick_shelf).sum(1)
    assert np.all(d == 1) and lay.shelves[lay.pick_shelf[:, 0], lay.pick_shelf[:, 1]].all()
    cells = lay.xy_to_cell(lay.fiducials)
    assert lay.is_free(cells).all()
    np.testing.assert_array_equal(lay.xy_to_cell(lay.cell_to_xy(lay.free_cells)), lay.free_cells)
    lay.validate(n_robots=4)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"aisle_width": 0.5}, "layout.aisle_width"),
        ({"cross_aisle_width": 0.6}, "layout.cross_aisle_width"),
        ({"block_length": 3.5}, "layout.block_length"),
        ({"block_depth": 2.5}, "layout.block_depth"),
        ({"shelf_rows": 0}, "layout.shelf_rows"),
        ({"n_stations": 0}, "layout.n_stations"),
        ({"n_stations": 50}, "layout.n_stations"),
        ({"cell_size": 0.0}, "layout.cell_size"),
        ({"fiducial_pitch": 0.0}, "layout.fiducial_pitch"),
        ({"n_uwb_anchors": 2}, "layout.n_uwb_anchors"),
    ],
)
def test_layout__bad_config_raises_naming_the_field(kw: dict, field: str) -> None:
    with pytest.raises(LayoutError) as e:
        generate_layout(LayoutConfig(**kw))
    assert e.value.field == field and str(e.value).startswith(field)
    assert "\n" not in str(e.value)


def test_layout__too_many_robots_names_n_robots() -> None:
    lay = generate_layout(LayoutConfig(shelf_rows=1, shelf_cols=1))
    with pytest.raises(LayoutError, match="^n_robots"):
        lay.validate(n_robots=10_000)
    with pytest.raises(LayoutError, match="^n_robots"):
        lay.start_cells(10_000)


def test_layout__start_cells_are_distinct_free_cells() -> None:
    lay = generate_layout(LayoutConfig())
    s = lay.start_cells(12)
    assert len({tuple(c) for c in s}) == 12 and lay.is_free(s).all()


def test_movingai__loads_small_inline_map(tmp_path: Path) -> None:
    p = tmp_path / "small.map"
    p.write_text(SMALL_MAP)
    lay = load_movingai(p, n_stations=2, n_chargers=2)
    assert lay.shape == (8, 10) and lay.name == "small"
    # file row 1 (".@@@@@@.") is our row 6 - 1 = 4 (south is row 0), +1 for the wall ring
    assert lay.shelves[5, 2:8].all() and lay.occupancy.sum() == (10 * 2 + 6 * 2) + 6 + 4
    assert (lay.stations[:, 0] == 1).all() and len(lay.stations) == 2
    lay.validate(n_robots=3)


def test_movingai__unreachable_station_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "split.map"
    p.write_text("type octile\nheight 4\nwidth 7\nmap\n.......\n.@@@@@.\n@@@@@@@\n..@@@..\n")
    lay = load_movingai(p, n_stations=2)
    with pytest.raises(LayoutError, match="^layout.stations"):
        lay.validate(n_robots=1)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("type octile\nwidth 3\nmap\n...\n", "height"),
        ("type octile\nheight 2\nwidth 3\nmap\n...\n", "rows"),
        ("type octile\nheight 1\nwidth 3\nmap\n.x.\n", "unknown cell"),
        ("type octile\nheight 1\nwidth 3\nmap\n@@@\n", "no free cells"),
    ],
)
def test_movingai__malformed_map_raises(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad.map"
    p.write_text(text)
    with pytest.raises(LayoutError, match=needle) as e:
        load_movingai(p)
    assert e.value.field == "layout.movingai_map"


def test_movingai__missing_file_and_config_route(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="not a file"):
        load_movingai(tmp_path / "nope.map")
    p = tmp_path / "small.map"
    p.write_text(SMALL_MAP)
    assert generate_layout(LayoutConfig(movingai_map=str(p))).shape == (8, 10)
