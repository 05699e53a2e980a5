"""Screenshots of rendered reports in a real browser (headless Chromium driven by Playwright), committed under
docs/screenshots/.

    python bench/screenshots.py REPORT_DIR NAME [--task TASK]

writes ``docs/screenshots/NAME.png`` (the page as it opens: title, summary table, the first timeline) and, with
``--task``, ``docs/screenshots/NAME-TASK.png`` (that task's section: its answers over steps). Needs Debian's
``chromium`` (``apt-get install chromium``) and ``pip install playwright`` (its own browsers are not downloaded:
it drives /usr/bin/chromium); no network is used. The page is checked as it is shot: every image loaded, and no
table wider than the page.
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


def _save(png: bytes, path: Path) -> Path:
    with Image.open(io.BytesIO(png)) as img:
        img.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


def shoot(report: Path, name: str, task: str | None = None, width: int = 1280, height: int = 1500) -> list[Path]:
    """Open the report's index.html, check it, and save the screenshots; return their paths."""
    from playwright.sync_api import sync_playwright

    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        raise SystemExit("no Chromium on this machine: apt-get install chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto((report / "index.html").resolve().as_uri(), wait_until="load")
        broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !i.complete || !i.naturalWidth)"
                                                  ".map(i => i.getAttribute('src'))")  # fmt: skip
        wide = page.eval_on_selector_all("table", "ts => ts.filter(t => t.scrollWidth > t.parentElement"
                                                  ".clientWidth + 1).length")  # fmt: skip
        if broken or wide:
            raise SystemExit(f"{report}: images not shown {broken}, {wide} table(s) wider than the page")
        paths = [_save(page.screenshot(), OUT / f"{name}.png")]
        if task:
            box = page.locator(f"#task-{task}").bounding_box()  # its heading and answers figure, as a reader scrolls
            answers = page.locator(f"#task-{task} img").first.bounding_box()
            clip = {"x": 0, "y": box["y"], "width": width, "height": answers["y"] + answers["height"] - box["y"] + 16}
            paths.append(_save(page.screenshot(clip=clip, full_page=True), OUT / f"{name}-{task}.png"))
        browser.close()
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a folder with the report's index.html")
    parser.add_argument("name", help="file name (without .png) under docs/screenshots/")
    parser.add_argument("--task", help="also the section of this task")
    args = parser.parse_args()
    for path in shoot(args.report, args.name, args.task):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
