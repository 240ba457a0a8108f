"""The web page in a real browser: Debian's headless Chromium driven by Selenium through
chromedriver, against a real stack. Log in, submit the demo zip through the form, watch the job
finish (live updates, no reload by the test), play the previews (v2a audio, av2av video), cancel a second job with its
confirmation, read the page at a phone's width, log in as another tenant and see nothing of the
first. Screenshots go to $AVLORA_TEST_ARTIFACTS (default: the test's tmp dir) and are printed.

Skips only when chromium or chromedriver is not installed (`apt-get install chromium chromium-driver`)."""

import os
import shutil
from pathlib import Path

import pytest

from avlora.demo_data import write_demo_dataset
from avlora.v1 import jobs_pb2
from web_stack import SMALL, web  # noqa: F401  (web: a fixture)

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver packages")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--autoplay-policy=no-user-gesture-required", "--disable-gpu"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("AVLORA_TEST_ARTIFACTS") or tmp_path) / "web-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_tenant_uses_the_page_end_to_end_in_chromium(web, browser, shots, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def shot(name: str) -> None:
        path = shots / f"{name}.png"
        browser.save_screenshot(str(path))
        print(f"screenshot: {path}")

    def wait(condition, seconds: float = 60):
        return WebDriverWait(browser, seconds, poll_frequency=0.25).until(lambda driver: condition())

    def text(css: str) -> str:  # read in one script: the live updates replace elements at any time
        return browser.execute_script("const e = document.querySelector(arguments[0]);"
                                      "return e ? e.textContent.trim() : '';", css)

    def log_in(key: str) -> None:
        browser.get(f"{web.url}/jobs")
        wait(lambda: browser.current_url.endswith("/login"))
        browser.find_element(By.ID, "api_key").send_keys(key)
        browser.find_element(By.ID, "login").click()
        wait(lambda: browser.current_url.endswith("/jobs"))

    def fill(data: Path | None, mode: str = "v2a", fresh: bool = True, **fields) -> None:
        if fresh:
            browser.get(f"{web.url}/submit")
            browser.find_element(By.LINK_TEXT, mode).click()  # the form of that mode
            wait(lambda: browser.current_url.endswith(f"mode={mode}"))
        if data:
            browser.find_element(By.ID, "dataset").send_keys(str(data))
        for name, value in (SMALL | fields).items():
            element = browser.find_element(By.ID, name)
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:
                element.clear()
                element.send_keys(value)

    def submit(data: Path | None, mode: str = "v2a", fresh: bool = True, **fields) -> str:
        fill(data, mode, fresh, **fields)
        browser.find_element(By.ID, "submit").click()
        wait(lambda: "/jobs/" in browser.current_url)
        return browser.current_url.rsplit("/", 1)[1]

    def wait_succeeded() -> None:
        wait(lambda: text("#state") in ("SUCCEEDED", "FAILED"), 600)
        assert text("#state") == "SUCCEEDED", text("#error")

    def play(css: str):
        """Plays the media element (muted) until it has data for the current position (readyState >= 2)."""
        media = browser.find_element(By.CSS_SELECTOR, css)
        browser.execute_script("arguments[0].muted = true; arguments[0].play(); arguments[0].scrollIntoView();", media)
        wait(lambda: browser.execute_script("return arguments[0].readyState;", media) >= 2)
        return media

    data = write_demo_dataset("v2a", tmp_path / "demo.zip", clips=3, frames=9, size=(64, 64))
    log_in(web.own)
    assert "No jobs" in text("#no-jobs")
    shot("1-jobs-empty")

    # A refused request: the server's message beside its field; the zip, uploaded once, is kept.
    fill(data, number_of_steps="50")
    shot("2a-submit-form")
    browser.find_element(By.ID, "submit").click()
    wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#field-number_of_steps.invalid .error"))
    assert "greater than or equal to 100" in text("#field-number_of_steps .error")
    assert browser.find_element(By.ID, "training_data_url").get_attribute("value").startswith("upload://")
    shot("2b-submit-refused")
    job_id = submit(None, fresh=False, number_of_steps="100")
    shot("2c-job-submitted")
    # The page updates itself: the state, the loss curve and the log arrive without the test reloading.
    wait(lambda: text("#loss-plot title"), 600)
    shot("3-job-training")
    wait_succeeded()
    assert browser.find_elements(By.CSS_SELECTOR, "#loss-plot polyline.validation")
    assert browser.find_elements(By.CSS_SELECTOR, "#loss-plot line.baseline")
    assert "SUCCEEDED" in text("#timeline")

    assert browser.execute_script("return arguments[0].duration;", play("#outputs audio")) > 0
    shot("4-job-succeeded-preview")

    # av2av: the preview is a video with its generated sound, played inline too
    pairs = write_demo_dataset("av2av", tmp_path / "pairs.zip", clips=3, frames=9, size=(64, 64))
    video_job = submit(pairs, mode="av2av")
    wait_succeeded()
    assert browser.execute_script("return arguments[0].videoWidth;", play("#outputs video")) > 0
    shot("4b-av2av-video-preview")

    browser.set_window_size(390, 844)   # a phone: nothing wider than the screen
    browser.get(f"{web.url}/jobs/{job_id}")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
    shot("5-job-phone")
    browser.get(f"{web.url}/jobs")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
    shot("6-jobs-phone")
    browser.set_window_size(1280, 1000)

    second = submit(data, number_of_steps="20000")
    browser.find_element(By.ID, "cancel").click()
    wait(lambda: browser.current_url.endswith(f"/jobs/{second}/cancel"))
    shot("7-cancel-confirmation")
    browser.find_element(By.ID, "confirm-cancel").click()
    wait(lambda: text("#state") == "CANCELLED")
    assert web.job(second, web.own).state == jobs_pb2.CANCELLED
    shot("8-job-cancelled")

    browser.get(f"{web.url}/usage")
    assert job_id[:12] in text("#usage") and video_job[:12] in text("#usage") and "200 units" in text("#usage-total")
    shot("9-usage")

    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not [message for message in errors if "Content Security Policy" in message or "live.js" in message], errors

    browser.find_element(By.ID, "logout").click()
    wait(lambda: browser.current_url.endswith("/login"))
    log_in(web.other)
    assert "No jobs" in text("#no-jobs") and job_id[:12] not in browser.page_source
    browser.get(f"{web.url}/jobs/{job_id}")
    assert "Not found" in text("h1") and "demo" not in browser.page_source
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/jobs/{job_id}/files/audio').then(r => done(r.status));")
    assert status == 404
    shot("10-other-tenant")
