"""One rank of a distributed test run: ``python _ddp_worker.py SPEC.json`` with torchrun's
variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) set by the test.

SPEC: ``model``, ``data``, ``out``, ``params``, optional ``rows``, ``resume``, ``patience``,
``die_after_epoch`` (rank 0 exits hard after that epoch's checkpoint: a killed run) and
``arrays`` (a folder: each rank writes its final weights there as rank{R}.safetensors, and
``comm.json`` with its communication counters)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    from safetensors.torch import save_file

    import sessionrec as sr
    from sessionrec.training.distributed import init_distributed, shutdown_distributed

    device = spec.get("device", "cpu")
    ddp = init_distributed(
        device, local_rank=int(os.environ["LOCAL_RANK"]), rows=spec.get("rows", "gather")
    )
    die = spec.get("die_after_epoch")

    def after_epoch(record: dict) -> bool:
        if die is not None and record["epoch"] == die:
            os._exit(3)  # a killed run: no clean-up, the checkpoint of this epoch is written
        return False

    model = sr.train(
        spec["model"], spec["data"], spec["out"], params=spec["params"], progress=False,
        resume=spec.get("resume", False), patience=spec.get("patience", "auto"),
        device=device, distributed=ddp, after_epoch=after_epoch, overwrite=True,
    )  # fmt: skip
    folder = Path(spec["arrays"])
    arrays = {k: v.contiguous() for k, v in model.state_arrays().items()}
    save_file(arrays, str(folder / f"rank{ddp.rank}.safetensors"))
    counters = {"seconds": ddp.comm_seconds, "bytes": ddp.comm_bytes, "calls": ddp.comm_calls}
    (folder / f"comm{ddp.rank}.json").write_text(json.dumps(counters))
    shutdown_distributed()


if __name__ == "__main__":
    main()
