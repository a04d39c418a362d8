"""Tests of the top-down renderer: geometry against the layout (the oracle), video writers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sim.layout import LayoutConfig, generate_layout
from sim.render import (
    CHARGER,
    FLOOR,
    LOAD,
    PALLET,
    PERSON,
    SHELF,
    STATION,
    WALL,
    RenderState,
    background,
    render_topdown,
    robot_colour,
    write_gif,
    write_mp4,
)


@pytest.fixture(scope="module")
def layout():
    return generate_layout(LayoutConfig(shelf_rows=1, shelf_cols=2, n_stations=2, n_chargers=2))


def _px(layout, img, xy):
    """Pixel (row, col) of world point xy (m), north up."""
    h_px, w_px = img.shape[:2]
    wm, hm = layout.size_m
    return int((hm - xy[1]) / hm * h_px), int(xy[0] / wm * w_px)


def _colour_at(layout, img, xy):
    r, c = _px(layout, img, xy)
    return tuple(int(v) for v in img[r, c])


def _cell_centre(layout, cell):
    return layout.cell_to_xy(np.array(cell))


def test_render__shape_dtype_aspect(layout):
    img = render_topdown(layout, None, width_px=480)
    h, w = layout.shape
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[1] == 480
    assert img.shape[0] == round(480 * h / w)
    assert img.flags.writeable  # a fresh copy, not the cached background


def test_render__static_cells_have_their_colours(layout):
    img = render_topdown(layout, RenderState(poses=np.zeros((0, 3))), width_px=480)
    shelf = np.argwhere(layout.shelves)[0]
    wall = (0, 0)
    free = np.argwhere(layout.free)
    plain = next(c for c in free if not any((layout.stations == c).all(1))
                 and not any((layout.chargers == c).all(1)))
    for cell, colour in ((shelf, SHELF), (wall, WALL), (layout.stations[0], STATION),
                         (layout.chargers[0], CHARGER), (plain, FLOOR)):
        assert _colour_at(layout, img, _cell_centre(layout, cell)) == colour, cell


def test_render__north_is_up(layout):
    img = render_topdown(layout, None, width_px=400)
    # stations sit on the south wall (row 1): they must be drawn near the bottom of the image
    r, _ = _px(layout, img, _cell_centre(layout, layout.stations[0]))
    assert r > img.shape[0] * 0.75


def test_render__dynamic_objects_where_they_are(layout):
    free = [tuple(c) for c in np.argwhere(layout.free)]
    rng = np.random.default_rng(0)
    idx = rng.choice(len(free), size=6, replace=False)
    robot_a, robot_b, pallet, load, person, _ = (free[i] for i in idx)
    xy_a, xy_b = _cell_centre(layout, robot_a), _cell_centre(layout, robot_b)
    st = RenderState(
        poses=np.array([[*xy_a, 0.0], [*xy_b, np.pi / 2]]),
        carrying=np.array([False, True]),
        load_cells=np.array([load]),
        pallets=np.array([pallet]),
        people=_cell_centre(layout, np.array([person])),
        routes=(np.array([robot_a]), np.zeros((0, 2), dtype=np.int64)),
    )
    img = render_topdown(layout, st, width_px=480)
    off = np.array([-0.2, 0.15])  # inside the body, away from the heading tick
    assert _colour_at(layout, img, xy_a + off) == robot_colour(0)
    assert _colour_at(layout, img, xy_b) == LOAD  # loaded robot: load mark in its centre
    assert _colour_at(layout, img, xy_b + np.array([0.22, -0.22])) == robot_colour(1)
    assert _colour_at(layout, img, _cell_centre(layout, pallet) + np.array([0.3, 0.0])) == PALLET
    assert _colour_at(layout, img, _cell_centre(layout, pallet)) == (20, 20, 20)  # crossed out
    assert _colour_at(layout, img, _cell_centre(layout, load)) == LOAD
    assert _colour_at(layout, img, _cell_centre(layout, person)) == PERSON
    # only the pixels near the objects change
    base = background(layout, 480)
    assert 0 < (img != base).any(-1).mean() < 0.2


def test_render__robot_orientation(layout):
    cell = tuple(np.argwhere(layout.free)[len(np.argwhere(layout.free)) // 2])
    xy = _cell_centre(layout, cell)
    for yaw in (0.0, np.pi / 2, np.pi, -np.pi / 2, np.pi / 4):
        img = render_topdown(layout, RenderState(poses=np.array([[*xy, yaw]])), width_px=480)
        ahead = xy + 0.38 * np.array([np.cos(yaw), np.sin(yaw)])
        behind = xy - 0.38 * np.array([np.cos(yaw), np.sin(yaw)])
        # the heading tick sticks out in front of the body, nothing behind it
        assert _colour_at(layout, img, ahead) == (20, 20, 20), yaw
        assert _colour_at(layout, img, behind) != (20, 20, 20), yaw


def test_render__robots_off_map_are_clipped(layout):
    wm, hm = layout.size_m
    st = RenderState(poses=np.array([[-1.0, -1.0, 0.3], [wm + 0.1, hm + 0.1, 2.0]]),
                     people=np.array([[wm + 5, 0.0]]), routes=(np.array([[0, 0], [50, 50]]),))
    img = render_topdown(layout, st, width_px=120)
    assert img.shape[1] == 120


def test_render__bad_width_fails_fast(layout):
    with pytest.raises(ValueError, match="width_px"):
        render_topdown(layout, None, width_px=0)


def test_render__fast(layout):
    big = generate_layout(LayoutConfig())
    st = RenderState(poses=np.array([[2.5, 2.5, 0.3], [5.5, 3.5, 1.6], [10.5, 2.5, 3.0], [3.5, 12.5, -1]]),
                     carrying=np.array([True, False, False, True]), load_cells=big.pick_points[:5],
                     pallets=np.array([[3, 8]]), people=np.array([[7.0, 4.0]]),
                     routes=(np.array([[2, 3], [2, 4], [2, 5], [3, 5]]), np.array([[3, 6], [3, 7]])))
    render_topdown(big, st)
    n = 50
    t0 = time.perf_counter()
    for _ in range(n):
        render_topdown(big, st, width_px=480)
    ms = (time.perf_counter() - t0) / n * 1e3
    assert ms < 10.0, ms  # target < 2 ms; loose bound for shared CI cores


def test_write_gif__roundtrip(layout, tmp_path):
    import imageio.v2 as imageio

    frames = [render_topdown(layout, RenderState(poses=np.array([[2.5 + 0.2 * k, 2.5, 0.0]])), width_px=96)
              for k in range(4)]
    p = write_gif(frames, tmp_path / "a.gif", fps=5)
    back = imageio.mimread(p)
    assert len(back) == 4 and back[0].shape[:2] == frames[0].shape[:2]


def test_write_gif__rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="frames"):
        write_gif([], tmp_path / "a.gif")
    with pytest.raises(ValueError, match="frames"):
        write_gif([np.zeros((4, 4), np.uint8)], tmp_path / "a.gif")


def test_write_mp4__writes_or_explains(layout, tmp_path):
    frames = [render_topdown(layout, None, width_px=97)] * 3  # odd width: padded for H.264
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="ffmpeg"):
            write_mp4(frames, tmp_path / "a.mp4")
        return
    p = write_mp4(frames, tmp_path / "a.mp4", fps=10)
    assert p.stat().st_size > 0


def test_render__broken_robot_is_crossed_out(layout):
    cell = tuple(np.argwhere(layout.free)[len(np.argwhere(layout.free)) // 2])
    xy = _cell_centre(layout, cell)
    st = RenderState(poses=np.array([[*xy, 0.0]]), broken=np.array([True]))
    img = render_topdown(layout, st, width_px=480)
    assert _colour_at(layout, img, xy + np.array([0.2, 0.2])) == PALLET  # on the diagonal
    assert _colour_at(layout, img, xy + np.array([-0.2, 0.05])) == robot_colour(0)


def test_render__real_sim_state(layout):
    """The simulator's own snapshot (duck-typed SimRenderState) renders robots where they are."""
    from sim.config import SimConfig
    from sim.warehouse import WarehouseSim

    s = WarehouseSim(SimConfig(n_robots=2, duration_s=5.0, layout=LayoutConfig(
        shelf_rows=1, shelf_cols=2, n_stations=2, n_chargers=2)), seed=0)
    try:
        s.reset(seed=0)
        img = s.render(480)
        lay = s.layout
        assert img.shape == (round(480 * lay.shape[0] / lay.shape[1]), 480, 3)
        for i, (x, y, yaw) in enumerate(s.ground_truth()):
            side = np.array([-np.sin(yaw), np.cos(yaw)]) * 0.2  # left of centre, off the tick
            assert _colour_at(lay, img, np.array([x, y]) + side) == robot_colour(i)
        st = s.render_state()
        for cell in st.load_cells:
            assert _colour_at(lay, img, _cell_centre(lay, cell)) == LOAD
    finally:
        s.close()
