"""Checks a built pkgdown site for what would break offline.

Run by `make site` after pkgdown:

    python pkgdown/check_site.py docs

Fails (exit status 1, one line per problem) when
  - a page or a style sheet loads anything from outside the site: a script, a
    style sheet, an image, a font, a frame (any URL with a scheme or starting
    with //, other than data:), or
  - a link or a resource inside the site points to a file that does not exist.
Links to other sites (<a href="https://...">) load nothing and are allowed; they
are counted by host at the end.
"""

import collections
import html.parser
import pathlib
import re
import sys
import urllib.parse

# Attributes that make the browser fetch something when the page loads.
RESOURCE_ATTRIBUTES = {
    "script": ["src"],
    "link": ["href"],
    "img": ["src", "srcset"],
    "iframe": ["src"],
    "source": ["src", "srcset"],
    "video": ["src", "poster"],
    "audio": ["src"],
    "embed": ["src"],
    "object": ["data"],
    "input": ["src"],
}
CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)|@import\s+(['"])(.*?)\3""")
NOT_FETCHED = ("data:", "mailto:", "javascript:", "about:", "#")


class PageLinks(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.resources = []  # (tag, url)
        self.anchors = []
        self._in_style = False
        self.styles = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in RESOURCE_ATTRIBUTES.get(tag, []):
            value = attrs.get(name)
            if not value:
                continue
            if name == "srcset":
                urls = [part.strip().split()[0] for part in value.split(",") if part.strip()]
            else:
                urls = [value]
            self.resources.extend((tag, url) for url in urls)
        if tag == "a" and attrs.get("href"):
            self.anchors.append(attrs["href"])
        if "style" in attrs and attrs["style"]:
            self.styles.append(attrs["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def is_external(url):
    url = url.strip()
    if url.startswith("//"):
        return True
    scheme = urllib.parse.urlsplit(url).scheme
    return bool(scheme) and scheme not in ("data", "mailto", "javascript", "about")


def local_target(site, page, url):
    """The file a site-relative `url` on `page` points to, or None when the
    URL fetches nothing (a fragment, data:, mailto:)."""
    url = url.strip()
    if not url or url.startswith(NOT_FETCHED):
        return None
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    if not path:
        return None
    target = (site / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
    if target.is_dir():
        target = target / "index.html"
    return target


def css_urls(text):
    for match in CSS_URL.finditer(text):
        yield match.group(2) or match.group(4)


def main(argv):
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} SITE_DIR")
    site = pathlib.Path(argv[1]).resolve()
    problems = []
    external_links = collections.Counter()
    pages = sorted(site.rglob("*.html"))
    sheets = sorted(site.rglob("*.css"))

    def check_local(source, url, what):
        target = local_target(site, source, url)
        if target is not None and not target.resolve().exists():
            problems.append(f"{source.relative_to(site)}: {what} {url} does not exist")

    for page in pages:
        parser = PageLinks()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        for tag, url in parser.resources:
            if is_external(url):
                problems.append(f"{page.relative_to(site)}: <{tag}> loads {url}")
            else:
                check_local(page, url, f"<{tag}>")
        for style in parser.styles:
            for url in css_urls(style):
                if is_external(url):
                    problems.append(f"{page.relative_to(site)}: inline style loads {url}")
        for url in parser.anchors:
            if is_external(url):
                external_links[urllib.parse.urlsplit(url).netloc or url] += 1
            else:
                check_local(page, url, "link")

    for sheet in sheets:
        for url in css_urls(sheet.read_text(encoding="utf-8", errors="replace")):
            if is_external(url):
                problems.append(f"{sheet.relative_to(site)}: loads {url}")
            else:
                check_local(sheet, url, "url()")

    for problem in problems:
        print(problem)
    hosts = ", ".join(f"{host} ({n})" for host, n in external_links.most_common())
    print(f"check_site: {len(pages)} pages, {len(sheets)} style sheets; "
          f"{len(problems)} problems; links (not loaded) to other sites: {hosts or 'none'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
