"""`facegan serve` in a real headless Chromium (Selenium): upload, slide, see the face change.

Needs the pip package ``selenium`` and the Debian packages ``chromium`` and
``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``); skipped otherwise.
The driver path is given explicitly, so Selenium Manager never runs (no downloads).
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegan_kit.serve.app import make_server

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _find(name: str, default: str) -> str | None:
    path = shutil.which(name) or default
    return path if Path(path).is_file() and os.access(path, os.X_OK) else None


CHROMIUM = _find("chromium", "/usr/bin/chromium")
CHROMEDRIVER = _find("chromedriver", "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium/chromedriver not found (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1100,1500",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: Selenium Manager is skipped (it would try to download)
    service = Service(executable_path=CHROMEDRIVER)
    try:
        driver = webdriver.Chrome(service=service, options=opts)
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start here is a skip, not a failure
        pytest.skip(f"headless chromium did not start: {str(exc).splitlines()[0][:200]}")
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def live_server(tiny_checkpoint, serving):
    with serving(make_server(tiny_checkpoint, host="127.0.0.1", port=0, quiet=True)) as srv:
        yield srv


def _img_bytes(driver, element_id: str) -> bytes:
    """The bytes behind an <img>'s (blob:) src, fetched inside the page."""
    out = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById(arguments[0]).src)
          .then((r) => r.arrayBuffer())
          .then((buf) => {
            const u = new Uint8Array(buf);
            let s = "";
            for (let i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);
            done(btoa(s));
          })
          .catch((e) => done("ERR:" + e));
        """, element_id)
    assert not out.startswith("ERR:"), out
    return base64.b64decode(out)


def _loaded(driver, element_id: str, min_seq: int = 1) -> bool:
    return bool(driver.execute_script(
        "const i = document.getElementById(arguments[0]);"
        "return i && i.complete && i.naturalWidth > 0 && Number(i.dataset.seq || 1) >= arguments[1];",
        element_id, min_seq))


def _save_screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    art = os.environ.get("FACEGAN_ARTIFACTS")
    if art:
        Path(art).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(art) / name)
    return path


def _open_page(driver, live_server):
    """Load the editor and wait until its script says it is ready; returns (driver, wait)."""
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30, poll_frequency=0.1)
    driver.get(live_server.url)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    return driver, wait


def test_upload_and_slide_in_the_browser(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By

    from facegan_kit.data.synthetic import render_face, subject_attributes

    face = tmp_path / "face.png"
    Image.fromarray(render_face(subject_attributes(3), 6, 0.0, 96, None, 3)).save(face)

    driver, wait = _open_page(browser, live_server)

    # upload through the real file input, as a pre-aligned crop
    checkbox = driver.find_element(By.ID, "prealigned")
    if not checkbox.is_selected():
        checkbox.click()
    driver.find_element(By.ID, "file").send_keys(str(face))
    wait.until(lambda d: _loaded(d, "result", 1))
    first_src = driver.find_element(By.ID, "result").get_attribute("src")
    first = _img_bytes(driver, "result")
    assert first[:8] == PNG_SIGNATURE

    # drag the slider: set its value and fire the input event the page listens to
    seq = int(driver.find_element(By.ID, "result").get_attribute("data-seq"))
    driver.execute_script(
        "const s = document.getElementById('intensity'); s.value = '1';"
        "s.dispatchEvent(new Event('input', {bubbles: true}));")
    wait.until(lambda d: _loaded(d, "result", seq + 1)
               and "intensity=1.000" in d.find_element(By.ID, "result").get_attribute("data-params"))
    result = driver.find_element(By.ID, "result")
    assert result.get_attribute("src") != first_src
    second = _img_bytes(driver, "result")
    assert second[:8] == PNG_SIGNATURE and second != first
    with Image.open(io.BytesIO(second)) as im:
        assert im.format == "PNG"
        arr = np.asarray(im.convert("RGB"))
    size = live_server.service.size
    assert arr.shape == (size, size, 3)
    assert driver.execute_script("return document.getElementById('intensity-value').textContent") == "1.00"

    # faces are shown at least 128 px wide, and the caption names the model's real size
    assert driver.execute_script("return document.getElementById('result').getBoundingClientRect().width") >= 128
    assert f"{size}x{size} px" in driver.find_element(By.ID, "original-caption").text

    # the paper's grid: labelled, each face at least 128 px wide, shown at its own size
    driver.find_element(By.ID, "show-grid").click()
    wait.until(lambda d: _loaded(d, "grid"))
    natural = driver.execute_script("return document.getElementById('grid').naturalWidth")
    shown = driver.execute_script("return document.getElementById('grid').getBoundingClientRect().width")
    assert natural >= 7 * 128 and shown == natural

    shot = _save_screenshot(driver, tmp_path, "serve_browser.png")
    with Image.open(shot) as im:
        assert im.size[0] > 200 and im.size[1] > 200

    # nothing was blocked by our own Content-Security-Policy, and no script errors
    logs = driver.get_log("browser")
    bad = [e["message"] for e in logs if e.get("level") == "SEVERE"
           or "Content Security Policy" in e.get("message", "")]
    bad = [m for m in bad if "favicon" not in m]
    assert not bad, json.dumps(bad, indent=1)[:2000]


def test_synthetic_face_and_transfer_in_the_browser(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By

    driver, wait = _open_page(browser, live_server)
    driver.find_element(By.ID, "use-sample").click()  # built-in synthetic face #0
    wait.until(lambda d: _loaded(d, "result", 1) and _loaded(d, "original"))
    driver.execute_script("document.getElementById('source-label').value = 'happy';")
    driver.find_element(By.ID, "use-source-sample").click()  # synthetic #1 showing 'happy'
    wait.until(lambda d: _loaded(d, "source") and _loaded(d, "transfer-result"))
    data = _img_bytes(driver, "transfer-result")
    assert data[:8] == PNG_SIGNATURE
    assert not driver.find_element(By.ID, "transfer-download").get_attribute("disabled")
    assert "error" not in (driver.find_element(By.ID, "status").get_attribute("class") or "")
    _save_screenshot(driver, tmp_path, "serve_browser_transfer.png")
    bad = [e["message"] for e in driver.get_log("browser")
           if (e.get("level") == "SEVERE" or "Content Security Policy" in e.get("message", ""))
           and "favicon" not in e.get("message", "")]
    assert not bad, bad


def _token(driver) -> str:
    return driver.execute_script("return document.body.dataset.token || ''")


def test_same_file_again_and_prealigned_toggle_rerun(browser, live_server, tmp_path):
    """Choosing the same file again, or toggling "pre-aligned crop" after a photo was chosen,
    runs the upload again (a file input fires no change event for the file it already holds)."""
    from selenium.webdriver.common.by import By

    from facegan_kit.data.synthetic import render_face, subject_attributes

    face = tmp_path / "face.png"
    Image.fromarray(render_face(subject_attributes(2), 3, 0.8, 96, None, 2)).save(face)
    driver, wait = _open_page(browser, live_server)
    checkbox = driver.find_element(By.ID, "prealigned")
    if checkbox.is_selected() and live_server.service.can_align():
        checkbox.click()
    if not checkbox.is_selected():
        # a small cartoon face: the detector finds none and says to tick "pre-aligned crop"
        driver.find_element(By.ID, "file").send_keys(str(face))
        wait.until(lambda d: "error" in (d.find_element(By.ID, "status").get_attribute("class") or "")
                   or _token(d))
        assert not _token(driver) or "face found" in driver.find_element(By.ID, "status").text
        before = _token(driver)
        checkbox.click()  # tick it: the same photo runs again, now as a crop
        wait.until(lambda d: _token(d) != before and "pre-aligned crop" in d.find_element(By.ID, "status").text)
    else:
        driver.find_element(By.ID, "file").send_keys(str(face))
        wait.until(lambda d: _token(d))
    assert driver.execute_script("return document.getElementById('file').value") == ""
    first = _token(driver)
    driver.find_element(By.ID, "file").send_keys(str(face))  # the very same file again
    wait.until(lambda d: _token(d) != first)
    wait.until(lambda d: _loaded(d, "result"))


def test_transfer_panel_has_no_broken_images_and_photos_get_the_warning(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By

    from facegan_kit.data.synthetic import render_face, subject_attributes

    driver, wait = _open_page(browser, live_server)
    visible = "const i = document.getElementById(arguments[0]); const r = i.getBoundingClientRect();" \
              "return getComputedStyle(i).visibility !== 'hidden' && r.width > 0 && !i.hidden;"
    driver.find_element(By.ID, "use-sample").click()  # a built-in face: no photo, no warning
    wait.until(lambda d: _loaded(d, "result", 1))
    assert driver.execute_script(visible, "transfer-panel")  # the panel is shown ...
    for img in ("source", "transfer-result"):  # ... but its empty pictures draw no broken-image icon
        assert not driver.execute_script(visible, img), img
    assert driver.find_element(By.ID, "photo-warning").get_attribute("hidden") is not None

    # the tests' model was trained on synthetic faces: a person's own file gets one plain warning
    photo = tmp_path / "mine.png"
    Image.fromarray(render_face(subject_attributes(5), 6, 0.0, 96, None, 5)).save(photo)
    driver.execute_script("document.getElementById('source-label').value = 'sad';")
    if not driver.find_element(By.ID, "prealigned").is_selected():
        driver.find_element(By.ID, "prealigned").click()
    driver.find_element(By.ID, "source-file").send_keys(str(photo))
    wait.until(lambda d: _loaded(d, "source") and _loaded(d, "transfer-result"))
    for img in ("source", "transfer-result"):
        assert driver.execute_script(visible, img), img
    warning = driver.find_element(By.ID, "photo-warning")
    assert warning.is_displayed()
    text = warning.text
    assert "synthetic" in text and "cartoon" in text and "exprgan-real-quick.toml" in text
    assert text.count("synthetic cartoon faces") == 1  # said once, not once per upload
