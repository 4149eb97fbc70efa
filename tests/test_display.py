"""Sinks without a window: headless publishing and frame files; the display choice."""

from __future__ import annotations

import io

import pytest

from engine.config import RenderSettings
from engine.render.display import HeadlessSink, WindowSink, choose_sink, display_unavailable

pygame = pytest.importorskip("pygame")


def canvas(colour=(200, 40, 10), size=(96, 64)):
    surface = pygame.Surface(size, 0, 32)
    surface.fill(colour)
    return surface


def test_headless_publishes_every_nth_frame_with_a_header_and_writes_pngs(tmp_path) -> None:
    sent = []
    settings = RenderSettings(headless=True, width=96, height=64, frames_dir=str(tmp_path / "frames"))
    sink = HeadlessSink(settings, frame_out=lambda header, data: sent.append((header, data)), fmt="jpeg", every=2)
    sink.open()
    for _ in range(6):
        sink.present(canvas())
    assert [h["frame"] for h, _ in sent] == [2, 4, 6]
    header, data = sent[0]
    assert header == {"frame": 2, "width": 96, "height": 64, "format": "jpeg"}
    image = pygame.image.load(io.BytesIO(data), "f.jpg")
    assert image.get_size() == (96, 64) and image.get_at((10, 10))[0] > 180
    files = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert files == ["frame_0000002.png", "frame_0000004.png", "frame_0000006.png"]
    png = pygame.image.load(str(tmp_path / "frames" / files[0]))
    assert tuple(png.get_at((5, 5)))[:3] == (200, 40, 10)  # lossless


def test_headless_hud_is_drawn_on_a_copy_not_on_the_held_canvas() -> None:
    sent = []
    sink = HeadlessSink(RenderSettings(headless=True), frame_out=lambda h, d: sent.append(d), fmt="png")
    held = canvas((0, 0, 0))
    sink.present(held, overlay=lambda target: target.fill((255, 255, 255), (0, 0, 8, 8)))
    assert tuple(held.get_at((1, 1)))[:3] == (0, 0, 0)
    shown = pygame.image.load(io.BytesIO(sent[0]), "f.png")
    assert tuple(shown.get_at((1, 1)))[:3] == (255, 255, 255)


def test_no_output_means_no_encoding() -> None:
    sink = HeadlessSink(RenderSettings(headless=True))
    sink.present(canvas())
    assert sink.published == 0 and sink.written == 0 and sink.seq == 1


@pytest.mark.parametrize(
    ("env", "available"),
    [
        ({}, False),
        ({"DISPLAY": ":0"}, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, True),
        ({"SDL_VIDEODRIVER": "dummy"}, True),
    ],
)
def test_display_detection(env, available) -> None:
    assert (display_unavailable(env) is None) is available


def test_choose_sink(monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    sink, reason = choose_sink(RenderSettings())
    assert isinstance(sink, HeadlessSink) and "no display" in reason
    sink, reason = choose_sink(RenderSettings(headless=True))
    assert isinstance(sink, HeadlessSink) and reason is None
    monkeypatch.setenv("DISPLAY", ":99")
    sink, reason = choose_sink(RenderSettings(), kiosk=True)
    assert isinstance(sink, WindowSink) and sink.fullscreen and reason is None


def test_framebuffer_hint_is_software_on_x11_by_default_and_the_operator_wins() -> None:
    from engine.config import Framebuffer, build_config
    from engine.errors import ConfigError
    from engine.render.display import framebuffer_hint

    auto = Framebuffer.AUTO
    assert framebuffer_hint(auto, {"DISPLAY": ":0"}) == "0"
    assert framebuffer_hint(auto, {"DISPLAY": ":0", "SDL_VIDEODRIVER": "x11"}) == "0"
    assert framebuffer_hint(auto, {"SDL_VIDEODRIVER": "kmsdrm"}) is None  # SDL's choice off X11
    assert framebuffer_hint(auto, {"DISPLAY": ":0", "SDL_VIDEODRIVER": "wayland"}) is None
    assert framebuffer_hint(Framebuffer.ACCELERATED, {"DISPLAY": ":0"}) == "1"
    assert framebuffer_hint(Framebuffer.SOFTWARE, {"SDL_VIDEODRIVER": "kmsdrm"}) == "0"
    assert framebuffer_hint(Framebuffer.SOFTWARE, {"SDL_FRAMEBUFFER_ACCELERATION": "1"}) is None
    assert build_config({"render": {"framebuffer": "software"}}).render.framebuffer is Framebuffer.SOFTWARE
    with pytest.raises(ConfigError, match="framebuffer"):
        build_config({"render": {"framebuffer": "gpu"}})
