"""Opens the built documentation site in headless Chromium and checks that it renders.

Run by `make site-test` after `make site`:

    python pkgdown/site_test.py docs docs-build/screenshots

Serves SITE_DIR from a local HTTP server on a free port of 127.0.0.1 (stopped
at the end), then visits the home page, the reference index, the reference
page of optimizer_swa() and every article, and checks on each:
  - a title and a first heading;
  - no console error (a script that fails, a file that does not load);
  - every request went to the local server (the site works offline);
  - every image loaded (naturalWidth > 0), and no font failed;
  - the page's table of contents was filled in, where it has one;
and on the reference page the usage block and the output of the examples,
on "How SWA works" its plots, and on the home page the search box. Saves a
screenshot of each page into SCREENSHOT_DIR. Uses Debian's chromium and
chromedriver (CHROMIUM and CHROMEDRIVER override the paths) through Selenium.
"""

import functools
import http.server
import json
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time
import urllib.parse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# The flags this closed network needs: without the background-networking ones,
# Chromium's own connections are refused and show up as errors.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,900",
]
PAGE_TIMEOUT_S = 30
MAX_SCREENSHOT_HEIGHT = 12000


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def start_server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    driver.set_script_timeout(PAGE_TIMEOUT_S)
    driver.get("about:blank")
    list(network_events(driver))  # what the start page loaded
    return driver


def network_events(driver):
    """The DevTools network events logged since the last call."""
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"].startswith("Network."):
            yield message["method"], message["params"]


def wait_until_settled(driver):
    WebDriverWait(driver, PAGE_TIMEOUT_S).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    # Fonts load lazily, once something uses them.
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "document.fonts.ready.then(() => done(true));")
    time.sleep(0.3)  # scripts run on DOMContentLoaded/load; let them finish


def check_page(driver, base, path, screenshots):
    """Visits `path`; returns (problems, a one-line summary)."""
    problems = []
    driver.get_log("browser")  # drop what earlier pages logged
    list(network_events(driver))
    driver.get(base + path)
    wait_until_settled(driver)

    title = driver.title.strip()
    headings = [h.text.strip() for h in driver.find_elements(By.TAG_NAME, "h1")]
    if not title:
        problems.append("no <title>")
    if not any(headings):
        problems.append("no <h1> heading")

    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"console error: {entry['message']}")

    origin = urllib.parse.urlsplit(base)
    requests = 0
    for method, params in network_events(driver):
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            parts = urllib.parse.urlsplit(url)
            if parts.scheme in ("data", "blob", "about", "chrome"):
                continue  # nothing fetched, or Chromium's own pages
            requests += 1
            if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
                problems.append(f"request to another host: {url}")
        elif method == "Network.responseReceived":
            status = params["response"]["status"]
            if status >= 400:
                problems.append(f"HTTP {status} for {params['response']['url']}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"failed to load: {params.get('errorText')}")

    images = driver.execute_script(
        "return Array.from(document.images, i => [i.currentSrc || i.src, "
        "i.complete && i.naturalWidth > 0]);")
    problems += [f"image not loaded: {src}" for src, ok in images if not ok]
    failed_fonts = driver.execute_script(
        "return Array.from(document.fonts).filter(f => f.status === 'error')"
        ".map(f => f.family);")
    problems += [f"font failed to load: {family}" for family in failed_fonts]

    if driver.find_elements(By.CSS_SELECTOR, "nav#toc"):
        toc_links = driver.find_elements(By.CSS_SELECTOR, "nav#toc a.nav-link")
        if not toc_links and driver.find_elements(By.CSS_SELECTOR, "main h2"):
            problems.append("the table of contents (nav#toc) is empty")

    problems += page_specific_checks(driver, path, images, screenshots)

    name = path.replace("/", "_").replace(".html", "") or "index"
    save_full_screenshot(driver, screenshots / f"{name}.png")
    summary = (f"{title!r}: {len(images)} images, {requests} requests to "
               f"{origin.netloc}")
    return problems, summary


def page_specific_checks(driver, path, images, screenshots):
    problems = []
    if path == "reference/optimizer_swa.html":
        # pkgdown puts each section in a div, headed by an h2 with the id.
        usage = driver.find_elements(By.XPATH, "//h2[@id='ref-usage']/..//pre")
        if not usage or "optimizer_swa(" not in usage[0].text:
            problems.append("no usage block with optimizer_swa( on the reference page")
        examples = driver.find_elements(By.XPATH, "//h2[@id='ref-examples']/..//pre")
        text = "\n".join(e.text for e in examples)
        if "#>" not in text:
            problems.append("the examples show no output (no '#>' lines)")
        if "swa_snapshot_count(model)" not in text:
            problems.append("the examples do not show their code")
    if path == "articles/how-swa-works.html":
        plots = [src for src, ok in images if "figure-html" in src]
        if len(plots) < 2:
            problems.append(f"expected 2 plots made at build time, found {len(plots)}")
    if path == "index.html":
        problems += check_search(driver, screenshots)
    return problems


def check_search(driver, screenshots):
    """Types into the search box; suggestions must appear (offline.js's Fuse
    and autocomplete over search.json)."""
    box = driver.find_element(By.ID, "search-input")
    box.click()
    box.send_keys("snapshot")
    try:
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(
            By.CSS_SELECTOR, ".aa-dropdown-menu .aa-suggestion"))
    except Exception:
        return ["typing 'snapshot' in the search box shows no suggestions"]
    suggestions = driver.find_elements(By.CSS_SELECTOR, ".aa-suggestion")
    if not any(s.is_displayed() for s in suggestions):
        return ["the search suggestions are not displayed"]
    driver.save_screenshot(str(screenshots / "search.png"))
    box.clear()
    driver.execute_script("document.activeElement.blur();")
    return []


def save_full_screenshot(driver, path):
    height = driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);")
    driver.set_window_size(1280, min(max(height, 900), MAX_SCREENSHOT_HEIGHT))
    time.sleep(0.2)
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


def pages_to_visit(site):
    pages = ["index.html", "reference/index.html", "reference/optimizer_swa.html"]
    pages += sorted(str(p.relative_to(site)) for p in (site / "articles").glob("*.html"))
    missing = [p for p in pages if not (site / p).is_file()]
    if missing:
        sys.exit(f"site_test: not in the built site: {', '.join(missing)} (run `make site`)")
    return pages


def main(argv):
    if len(argv) != 3:
        sys.exit(f"usage: {argv[0]} SITE_DIR SCREENSHOT_DIR")
    site = pathlib.Path(argv[1]).resolve()
    screenshots = pathlib.Path(argv[2]).resolve()
    screenshots.mkdir(parents=True, exist_ok=True)
    for old in screenshots.glob("*.png"):
        old.unlink()
    pages = pages_to_visit(site)
    # `timeout` stops the test with SIGTERM: exit through the `finally` below,
    # which stops Chromium, chromedriver and the server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    server = start_server(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    failures = 0
    with tempfile.TemporaryDirectory(prefix="kerasswa-chromium-") as profile:
        driver = start_browser(profile)
        try:
            for path in pages:
                problems, summary = check_page(driver, base, path, screenshots)
                print(f"{'FAIL' if problems else 'ok  '} {path}  {summary}")
                for problem in problems:
                    print(f"       {problem}")
                failures += bool(problems)
        finally:
            driver.quit()
            server.shutdown()
            server.server_close()
    print(f"site_test: {len(pages) - failures} of {len(pages)} pages pass; "
          f"screenshots in {screenshots}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
