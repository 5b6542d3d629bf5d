"""The shopper's path in a real browser: Debian's Chromium (headless) opens the try-on page from the gateway the way
a product page deep-links into it (`?item=...&consent=1`), its fake camera plays a real video, and the rendered
frames with the item come back into the page: checked on the page's pixels (the item changes the camera frame),
with the latency the page shows. Screenshots go to out/browser/ (desktop and phone-sized)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import ROOT, Settings
from streams.stack import embedded
from tests.browser import browser, changed_fraction, chromium_path, shown_and_sent, video_to_y4m

pytestmark = pytest.mark.integration
ITEM = "tee-breton-stripes"
VIDEO = "people/videos/mediapipe_selfie_upper_body.mp4"
ARTEFACTS = ROOT / "out" / "browser"


@pytest.fixture(scope="module")
def camera(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    yield video_to_y4m(data_dir / VIDEO, tmp_path_factory.mktemp("camera") / "camera.y4m", seconds=12)


def test_a_shopper_sees_the_item_on_their_camera_feed_in_chromium(stack: Settings, camera: Path) -> None:
    gateway = embedded.Gateway(0, stack)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with browser(camera) as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{gateway.url}?item={ITEM}&consent=1")
        page.wait_for_function("window.vto && window.vto.framesShown >= 20", timeout=120_000)
        state = page.evaluate("({state: vto.state, selected: vto.selectedItem, latency: vto.latencyMs})")
        assert state["state"] == "live" and state["selected"] == ITEM
        assert 0 < state["latency"] < 10_000
        assert "latency" in page.inner_text("#latency") and "ms" in page.inner_text("#latency")
        selected = page.locator(f'#catalogue button.item[data-item-id="{ITEM}"]')
        assert selected.get_attribute("aria-pressed") == "true"
        # Pixels: the frame the page shows against the very camera frame it sent for it.
        rendered, sent = shown_and_sent(page)
        page.screenshot(path=str(ARTEFACTS / "tryon-desktop.png"))
        changed = changed_fraction(rendered, sent)
        assert changed > 0.02, f"only {changed:.3f} of the pixels changed: no item on the frame"

        # Choosing another item from the catalogue switches the try-on.
        shown_before = page.evaluate("vto.framesShown")
        page.locator('#catalogue button.item[data-item-id="sunglasses-blue-wayfarer"]').click()
        page.wait_for_function("vto.selectedItem === 'sunglasses-blue-wayfarer'", timeout=10_000)
        page.wait_for_function(f"vto.framesShown >= {shown_before + 10}", timeout=60_000)  # still live after it
        assert page.evaluate("vto.state") == "live" and page.inner_text("#message").strip() == ""
        assert errors == [], errors

        phone = chromium.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.goto(f"{gateway.url}?item={ITEM}&consent=1")
        phone.wait_for_function("window.vto && window.vto.framesShown >= 3", timeout=120_000)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sideways on a phone
        phone.screenshot(path=str(ARTEFACTS / "tryon-phone.png"), full_page=True)


def test_without_consent_the_page_asks_and_sends_nothing(stack: Settings, camera: Path) -> None:
    gateway = embedded.Gateway(0, stack)
    with browser(camera) as chromium:
        page = chromium.new_page()
        page.goto(f"{gateway.url}?item={ITEM}")
        page.wait_for_selector("#consent-panel", state="visible", timeout=20_000)
        page.wait_for_timeout(1500)
        assert page.evaluate("vto.framesSent") == 0 and page.evaluate("vto.sessionId") in (None, "")
        assert page.evaluate("document.querySelector('#camera').srcObject") is None  # the camera is not even open
        page.click("#consent-yes")
        page.wait_for_function("vto.framesShown >= 1", timeout=120_000)


def test_a_shopper_without_a_camera_tries_the_item_on_a_photo(stack: Settings, camera: Path, data_dir: Path) -> None:
    gateway = embedded.Gateway(0, stack)
    photo = data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg"
    with browser(None) as chromium:  # no camera device at all
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{gateway.url}?item={ITEM}&consent=1")
        page.wait_for_function("window.vto && vto.state === 'no-camera'", timeout=30_000)
        assert "photo" in page.inner_text("#status").lower()  # the page offers the photo mode
        page.set_input_files("#photo-input", str(photo))
        page.wait_for_function("vto.state === 'photo' && vto.framesShown >= 2", timeout=120_000)
        rendered, sent = shown_and_sent(page)
        assert changed_fraction(rendered, sent) > 0.005, "no item on the photo"  # the person is small in this photo
        page.screenshot(path=str(ARTEFACTS / "tryon-photo.png"))
