"""Browser hashing throughput: the page's streaming SHA-256 of a 512 MiB file, in Debian's
headless Chromium, against `sha256sum` on the same file in the same run.

    python benchmarks/web_hash.py [--mib 512]

The page is served by okai web's server with a config.json that points at a closed port,
so only the hashing step does real work; the time is from handing the file to the page
to the model.digest check passing (the digest is compared with sha256sum's).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from okai.web.server import WebServer, dist_dir  # noqa: E402
from web_stack import chromium  # noqa: E402

CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens, reads fail at once


def make_file(path: Path, mib: int) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB, varied enough for a hash
    with path.open("wb") as out:
        for i in range(mib):
            out.write(block[i % 256 :] + block[: i % 256])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = {
        "schema": "okai.web-config/v1",
        "defaultNetwork": "dev",
        "networks": {"dev": {"rpcUrl": CLOSED, "aggregator": CLOSED}},
    }
    with tempfile.TemporaryDirectory(prefix="okai-web-hash-") as tmp:
        path = Path(tmp) / "model.bin"
        make_file(path, args.mib)
        size = path.stat().st_size
        baseline = []
        for _ in range(args.runs):
            started = time.perf_counter()
            out = subprocess.run(
                ["sha256sum", str(path)], capture_output=True, text=True, check=True
            )
            baseline.append(time.perf_counter() - started)
        expected = "sha256:" + out.stdout.split()[0]
        server = WebServer("127.0.0.1", 0, dist_dir(), lambda: config)
        server.start_in_thread()
        browser_times = []
        try:
            with chromium() as context:
                for _ in range(args.runs):
                    page = context.new_page()
                    page.goto(server.url)
                    page.wait_for_selector("body[data-ready='true']")
                    started = time.perf_counter()
                    page.set_input_files("#file", str(path))
                    page.wait_for_selector("li[data-check='model.digest'].passed", timeout=600_000)
                    browser_times.append(time.perf_counter() - started)
                    # The address bar gets the deep link once the (failing) lookup is done.
                    page.wait_for_function(f"() => location.hash.includes('{expected[7:]}')")
                    page.close()
        finally:
            server.shutdown()
            server.server_close()
    mb = size / 1e6
    best_sum, best_page = min(baseline), min(browser_times)
    print(f"file: {size / 2**20:.0f} MiB")
    print(f"sha256sum     : {best_sum:6.2f} s  {mb / best_sum:7.1f} MB/s (best of {args.runs})")
    print(f"page (Chromium): {best_page:6.2f} s  {mb / best_page:7.1f} MB/s (best of {args.runs})")
    print(f"ratio page/sha256sum throughput: {best_sum / best_page:.2f}")


if __name__ == "__main__":
    main()
