"""Read one 256 MiB blob with verification: okai's throughput against curl's, same server.

okai streams the blob to a temporary file while hashing it, checks the
SHA-256 and renames the file into place; curl only writes it.
Target: at least 0.9x curl.
"""

from __future__ import annotations

from okai.digest import Digest
from okai.walrus.client import WalrusClient
from walrus_common import RUNS, MiB, best_of, curl, random_file, report, server_process, workdir

SIZE = 256 * MiB


def main() -> None:
    with workdir("read") as folder, server_process(folder) as url:
        source = random_file(folder / "blob.bin", SIZE)
        expected = Digest.of_file(source)
        with WalrusClient([url], url, max_body=0, compute_blob_ids_up_to=0) as client:
            blob_id = client.store_file(source).blob_id
            seconds = best_of(
                RUNS,
                curl=lambda: curl("-o", str(folder / "curl.bin"), f"{url}/v1/blobs/{blob_id}"),
                okai=lambda: client.read_to_file(blob_id, expected, folder / "okai.bin"),
            )
        report("read one blob, verified by SHA-256", SIZE, seconds, "curl", ">= 0.9x curl")


if __name__ == "__main__":
    main()
