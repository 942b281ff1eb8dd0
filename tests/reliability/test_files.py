"""Files a rerun finds in the output folder: a symlink, a directory, a deleted file.

tests/integration/test_download.py covers one download's names, symlinks and existing files;
here a journaled batch is rerun after its folder was tampered with.
"""

from __future__ import annotations

from pathlib import Path

import runcomfy_async as rc
from runcomfy_async.simulator import ModelProfile, Simulator, SimulatorConfig
from tests.reliability._support import WAN

QUICK = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)


async def batch(client: rc.Client, tmp_path: Path) -> dict[str, rc.Item]:
    inputs = [(WAN, {"prompt": f"p{i}"}) for i in range(4)]
    items = client.map(
        inputs,
        key=lambda value: value[1]["prompt"],
        journal=tmp_path / "journal.sqlite",
        download_to=tmp_path / "out",
        name_template="{key}-{n}.{ext}",
    )
    return {str(item.key): item async for item in items}


async def test_a_rerun_never_follows_or_replaces_what_was_planted_in_the_output_folder(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(models={WAN: ModelProfile(run_time=(0.02, 0.05))}, queue_delay=0.0)
    async with Simulator(config) as sim, rc.Client("k", base_url=sim.url, poll=QUICK) as client:
        first = await batch(client, tmp_path)
        assert all(item.ok for item in first.values())
        out = tmp_path / "out"
        precious = tmp_path / "precious.txt"
        precious.write_bytes(b"not yours")
        (out / "p0-0.png").unlink()
        (out / "p0-0.png").symlink_to(precious)  # a symlink out of the folder
        (out / "p1-0.png").unlink()
        (out / "p1-0.png").mkdir()  # a directory where the file was
        (out / "p2-0.png").unlink()  # simply gone
        again = await batch(client, tmp_path)
        submits = sim.ledger.calls["submit"]
    assert submits == 4  # nothing was submitted twice for it
    assert precious.read_bytes() == b"not yours"  # never written through the link
    assert (out / "p0-0.png").is_symlink()
    assert (out / "p1-0.png").is_dir()
    for key in ("p0", "p1"):  # refused, said so, and the result is still there
        assert isinstance(again[key].error, rc.DownloadError), again[key]
        assert again[key].result is not None
    assert again["p2"].ok  # a deleted file is fetched again
    assert (out / "p2-0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert again["p3"].ok
    assert again["p3"].resumed
    assert again["p3"].files == first["p3"].files
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary file left behind
