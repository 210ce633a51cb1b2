"""Opens the built documentation site in headless Chromium and checks that it renders.

Run by `make site-test` after `make site`:

    python pkgdown/site_test.py docs docs-build/screenshots

Serves SITE_DIR from a local HTTP server on a free port of 127.0.0.1 (stopped
at the end), then visits the home page, the reference index, the reference
page of optimizer_swa() and every article, and checks on each:
  - a title and a first heading;
  - no console error (a script that fails, a file that does not load or does
    not match the hash that head.html gives it);
  - every request went to the local server (the site works offline);
  - every image loaded (naturalWidth > 0), and no font failed;
  - the page's table of contents was filled in, where it has one;
  - headroom.js took the navbar;
and on the reference page the usage block and the output of the examples,
and that the navbar hides on scrolling down (headroom.js); on "How SWA works"
its plots. Then the search (pkgdown's own, with Fuse, autocomplete.js and
mark.js from npm): on the home page, typing a word must offer the reference
page of the function it names, a misspelled name too (Fuse's fuzzy match),
and picking the offer must open that page with the word marked. Saves a
screenshot of each page into SCREENSHOT_DIR. Uses Debian's chromium and
chromedriver (CHROMIUM and CHROMEDRIVER override the paths) through Selenium.
"""

import functools
import http.server
import json
import os
import pathlib
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.parse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
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
# What is typed into the search box, and the reference page each must offer:
# the name, and the name misspelled, which a search for the words as typed
# cannot find (Fuse finds it: one edit in 17 letters is within pkgdown's
# threshold of 0.1 edits a letter).
SEARCHES = [("snapshot", "reference/swa_take_snapshot.html"),
            ("swa_take_snapshto", "reference/swa_take_snapshot.html")]
# The Fuse that pkgdown 2.0.7's template names (pkgdown/package.json).
FUSE_VERSION = "6.4.6"


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


def console_errors(driver):
    """The console errors logged since the last call."""
    return [f"console error: {entry['message']}" for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def check_requests(driver, base):
    """Problems with the requests made since the last call, and their number."""
    problems = []
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
    return problems, requests


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

    problems += console_errors(driver)
    request_problems, requests = check_requests(driver, base)
    problems += request_problems

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
    if "headroom" not in navbar_classes(driver):
        problems.append("headroom.js did not take the navbar (no class 'headroom')")

    problems += page_specific_checks(driver, path, images)

    name = path.replace("/", "_").replace(".html", "") or "index"
    save_full_screenshot(driver, screenshots / f"{name}.png")
    summary = (f"{title!r}: {len(images)} images, {requests} requests to "
               f"{urllib.parse.urlsplit(base).netloc}")
    return problems, summary


def navbar_classes(driver):
    return driver.execute_script(
        "const nav = document.querySelector('nav.navbar');"
        "return nav ? Array.from(nav.classList) : [];")


def check_headroom(driver):
    """Scrolling down must hide the navbar, scrolling back up show it."""
    for y, state in [(800, "headroom--unpinned"), (0, "headroom--pinned")]:
        driver.execute_script(f"window.scrollTo(0, {y});")
        try:
            WebDriverWait(driver, 5).until(lambda d: state in navbar_classes(d))
        except Exception:
            return [f"after scrolling to {y} px the navbar has classes "
                    f"{navbar_classes(driver)}, not {state!r} (headroom.js)"]
    return []


def page_specific_checks(driver, path, images):
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
        problems += check_headroom(driver)
    if path == "articles/how-swa-works.html":
        plots = [src for src, ok in images if "figure-html" in src]
        if len(plots) < 2:
            problems.append(f"expected 2 plots made at build time, found {len(plots)}")
    return problems


def shown_suggestions(driver):
    """The search suggestions shown, as elements, in their order."""
    return [s for s in driver.find_elements(By.CSS_SELECTOR, ".aa-dropdown-menu .aa-suggestion")
            if s.is_displayed()]


def offers(text, function):
    """Whether a suggestion's text is of the reference page of `function`.

    A suggestion is pkgdown's template filled from one entry of search.json,
    "Reference > Title — name > section" on a reference page. The
    suggestions are not links (picking one sets window.location), so the
    page is told by its title.
    """
    return re.search(rf"— {re.escape(function)}(\s|$)", text) is not None


def type_query(box, query):
    """Replaces what the search box holds by `query`, key by key, as a
    reader would (autocomplete.js puts back a value set by WebDriver's
    clear())."""
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    box.send_keys(query)


def check_search(driver, base, screenshots):
    """On the home page, each query of SEARCHES must offer its page, and
    picking the offer for the first must open that page with the query
    marked. Returns (problems, a one-line summary)."""
    problems, seen = [], []
    driver.get_log("browser")
    list(network_events(driver))
    driver.get(base + "index.html")
    wait_until_settled(driver)
    version = driver.execute_script("return window.Fuse && window.Fuse.version;")
    if version != FUSE_VERSION:
        problems.append(f"window.Fuse.version is {version!r}, not {FUSE_VERSION!r}")
    box = driver.find_element(By.ID, "search-input")
    box.click()
    # pkgdown.js fetches search.json and builds its Fuse on the first focus;
    # what is typed before that is ready finds nothing.
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "return performance.getEntriesByType('resource')"
        ".some(e => e.name.endsWith('/search.json'))"
        " && !document.getElementById('search-input').classList.contains('loading');"))

    for number, (query, page) in enumerate(SEARCHES):
        function = pathlib.PurePosixPath(page).stem
        type_query(box, query)
        try:
            WebDriverWait(driver, 10).until(
                lambda d: any(offers(s.text, function) for s in shown_suggestions(d)))
        except Exception:
            shown = [" ".join(s.text.split()) for s in shown_suggestions(driver)]
            problems.append(f"typing {query!r} does not offer {function}(); offered: {shown[:5]}")
            continue
        offered = [s.text for s in shown_suggestions(driver)]
        first = next(i for i, text in enumerate(offered) if offers(text, function))
        left, right, width = driver.execute_script(
            "const r = document.querySelector('.aa-dropdown-menu').getBoundingClientRect();"
            "return [r.left, r.right, document.documentElement.clientWidth];")
        if left < 0 or right > width:
            problems.append(f"typing {query!r}: the suggestions span {left:.0f}-{right:.0f} px, "
                            f"past the window's 0-{width} px")
        seen.append(f"{query!r}: {len(offered)} suggestions, {function} "
                    f"{'first' if first == 0 else f'number {first + 1}'}")
        driver.save_screenshot(str(screenshots / f"search-{number + 1}.png"))

    problems += console_errors(driver)
    if problems:
        return problems, "; ".join(seen)

    # Pick the offer of the first query: its page opens with ?q=, and mark.js
    # marks the query there.
    query, page = SEARCHES[0]
    function = pathlib.PurePosixPath(page).stem
    type_query(box, query)
    WebDriverWait(driver, 10).until(
        lambda d: any(offers(s.text, function) for s in shown_suggestions(d)))
    next(s for s in shown_suggestions(driver) if offers(s.text, function)).click()
    try:
        WebDriverWait(driver, PAGE_TIMEOUT_S).until(
            lambda d: urllib.parse.urlsplit(d.current_url).path == "/" + page)
    except Exception:
        return problems + [f"picking {function} opened {driver.current_url}, not {page}"], \
            "; ".join(seen)
    wait_until_settled(driver)
    marked = driver.execute_script(
        "return Array.from(document.querySelectorAll('main#main mark'), m => m.textContent);")
    if not any(query in m.lower() for m in marked):
        problems.append(f"{page}?q={query}: no '{query}' marked (mark.js); marked: {marked[:5]}")
    problems += console_errors(driver)
    request_problems, _ = check_requests(driver, base)
    problems += request_problems
    save_full_screenshot(driver, screenshots / "search-picked.png")
    seen.append(f"picking it opens {page} with {len(marked)} words marked")
    return problems, "; ".join(seen)


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

    def report(name, problems, summary):
        nonlocal failures
        print(f"{'FAIL' if problems else 'ok  '} {name}  {summary}")
        for problem in problems:
            print(f"       {problem}")
        failures += bool(problems)

    with tempfile.TemporaryDirectory(prefix="kerasswa-chromium-") as profile:
        driver = start_browser(profile)
        try:
            for path in pages:
                report(path, *check_page(driver, base, path, screenshots))
            report("search", *check_search(driver, base, screenshots))
        finally:
            driver.quit()
            server.shutdown()
            server.server_close()
    print(f"site_test: {len(pages) + 1 - failures} of {len(pages) + 1} checks pass "
          f"({len(pages)} pages and the search); screenshots in {screenshots}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
