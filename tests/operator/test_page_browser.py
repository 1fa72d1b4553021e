"""The status page in a real headless Chromium (Debian's chromium + chromium-driver, driven
by selenium) against a real `bot4d --sim`: it renders the state, follows an e-stop press
and a halt live, its halt button halts, it fits a phone screen, and a screenshot is
written (tmp dir, and bench-results/operator-page*.png for the report).

The waits poll the DOM with a generous deadline; they are not timing assertions. How fast
the page follows is measured by scripts/bench-operator.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.daemon_harness import REPO
from tests.operator.helpers import WEB_ON, page_url

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (scripts/setup "
           "installs them: apt-get install chromium chromium-driver)")
DEADLINE_S = 10.0


def chrome(user_data: Path, width: int = 1280, height: int = 1400, phone: bool = False):
    """Headless Chromium with the flags a closed network needs (no background fetches)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--disable-quic",
              f"--user-data-dir={user_data}", f"--window-size={width},{height}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if phone:   # a real phone viewport (a headless window is at least 500 px wide)
        opts.add_experimental_option("mobileEmulation", {"deviceMetrics": {
            "width": width, "height": height, "pixelRatio": 2.0, "touch": True}})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.fixture
def browser(tmp_path):
    drv = chrome(tmp_path / "chrome-profile")
    yield drv
    drv.quit()


def _state(drv) -> str:
    from selenium.webdriver.common.by import By
    return drv.find_element(By.ID, "state").get_attribute("data-state")


def wait_state(drv, state: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(drv, DEADLINE_S, poll_frequency=0.02).until(
        lambda d: _state(d) == state, message=f"page never showed state {state}")


def test_page_follows_estop_and_halt_and_its_halt_button_halts(start_daemon, browser, tmp_path):
    from selenium.webdriver.common.by import By
    d = start_daemon(env={**WEB_ON, "BOT4__DAEMON__AUTO_START": "true"})
    d.wait_ready()
    base = page_url(d)
    browser.get(base)
    wait_state(browser, "trading")
    assert "live" in browser.find_element(By.ID, "conn").text
    assert browser.find_element(By.ID, "led").get_attribute("class") == "led green"
    safety = browser.find_element(By.ID, "safety-body").text
    assert "closed (healthy)" in safety
    assert "BTCUSDT" in browser.find_element(By.ID, "market-body").text
    assert "loop" in browser.find_element(By.ID, "watchdog-body").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#charts .uplot")) == 2

    # e-stop press: the page shows it (and the latch) without a reload.
    r = d.ctl("sim", "estop", "press")
    assert r.returncode == 0, r.stderr
    wait_state(browser, "estop")
    assert "OPEN" in browser.find_element(By.ID, "safety-body").text
    assert "red_fast_blink" in browser.find_element(By.ID, "led").get_attribute("class")
    assert browser.find_element(By.ID, "halt-button").get_attribute("disabled") is not None
    # Reset stays local (bot4ctl); the page follows that too.
    assert d.ctl("sim", "estop", "release").returncode == 0
    for _ in range(3):   # reset may ask to retry while cancels await confirmation
        if d.ctl("reset").returncode == 0:
            break
        time.sleep(0.2)
    wait_state(browser, "ready")

    # A halt from bot4ctl shows up live.
    assert d.ctl("start").returncode == 0
    wait_state(browser, "trading")
    assert d.ctl("halt", "--reason", "from bot4ctl").returncode == 0
    wait_state(browser, "halted")
    assert "from bot4ctl" in browser.find_element(By.ID, "reason").text
    d.ctl("reset")
    d.ctl("start")
    wait_state(browser, "trading")

    # The page's own halt button.
    browser.find_element(By.ID, "halt-reason").send_keys("pressed in the browser test")
    browser.find_element(By.ID, "halt-button").click()
    wait_state(browser, "halted")
    st = d.status()
    assert st["state"] == "halted" and st["latch"]["kind"] == "halt"
    assert "web page (127.0.0.1): pressed in the browser test" in st["reason"]
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, DEADLINE_S).until(
        lambda b: "halted" in b.find_element(By.ID, "halt-result").text)

    # No script error and no content-security-policy violation on the way.
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe

    browser.set_window_size(1280, 2400)   # the whole page in one picture
    shot = tmp_path / "operator-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    shutil.copy(shot, out / "operator-page.png")
    assert d.terminate() == 0


def test_page_fits_a_phone_screen(start_daemon, tmp_path):
    d = start_daemon(env=WEB_ON)
    d.wait_ready()
    drv = chrome(tmp_path / "chrome-phone", 412, 915, phone=True)
    try:
        drv.get(page_url(d))
        wait_state(drv, "ready")
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert drv.execute_script("return window.innerWidth") == 412
        over = drv.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth")
        assert over <= 1, f"page is {over} px wider than a 412 px phone screen"
        btn = drv.execute_script(
            "const r = document.getElementById('halt-button').getBoundingClientRect();"
            "return [r.right, r.height]")
        assert btn[0] <= 412 and btn[1] >= 36, "halt button off screen or too small to tap"
        shot = tmp_path / "operator-page-phone.png"
        assert drv.save_screenshot(str(shot)) and shot.stat().st_size > 5_000
        (REPO / "bench-results").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "bench-results" / "operator-page-phone.png")
    finally:
        drv.quit()
    assert d.terminate() == 0
