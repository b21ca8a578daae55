"""Peak memory while reading a 1 GiB blob: okai's streaming read stays flat.

The read runs in a child process that reports its own peak RSS; a second
child does everything but the read (imports, client) to show the baseline,
and curl's peak RSS for the same read is shown for scale.
Target: under 200 MiB.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from okai.digest import Digest
from okai.walrus.client import WalrusClient
from walrus_common import MiB, random_file, server_process, workdir

SIZE = 1024 * MiB
CHILD = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from okai.digest import Digest
    from okai.walrus.client import WalrusClient

    url, blob_id, digest, dest, read = sys.argv[1:]
    with WalrusClient([url], url, compute_blob_ids_up_to=0) as client:
        if read == "read":
            client.read_to_file(blob_id, Digest.parse(digest), Path(dest))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def child_peak_mib(*args: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip()) / 1024


def curl_peak_mib(url: str, dest: str) -> float:
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "curl", "-sS", "-o", dest, url],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    with workdir("rss") as folder, server_process(folder) as url:
        source = random_file(folder / "blob.bin", SIZE)
        digest = Digest.of_file(source)
        with WalrusClient([url], url, max_body=0, compute_blob_ids_up_to=0) as client:
            blob_id = client.store_file(source).blob_id
        source.unlink()
        dest = str(folder / "out.bin")
        baseline = child_peak_mib(url, blob_id, str(digest), dest, "no-read")
        reading = child_peak_mib(url, blob_id, str(digest), dest, "read")
        assert Digest.of_file(dest) == digest
        curl_rss = curl_peak_mib(f"{url}/v1/blobs/{blob_id}", dest)
        print(f"peak RSS reading a {SIZE // MiB} MiB blob (machine may be shared)")
        print(f"  okai, read + verify          {reading:8.1f} MiB")
        print(
            f"  okai, same process, no read  {baseline:8.1f} MiB  (the read adds "
            f"{reading - baseline:.1f} MiB)"
        )
        print(f"  curl                         {curl_rss:8.1f} MiB")
        print(f"  target: < 200 MiB  ({reading / 200:.2f} of the budget)")


if __name__ == "__main__":
    main()
