"""The ceiling of bench_retrieve's design: a bare pynetdicom C-MOVE/C-GET SCP against plain Orthanc.

The archive's DICOM front is a pynetdicom SCP. This measures what pynetdicom itself
allows, with nothing of the archive around it (no vault, no decryption, no header patch,
no authorisation, no audit): a bare SCP in its own process serves the same N
de-identified CT slices (512x512) from memory, and a plain Orthanc 1.10.1 serves them
from its storage, to the same workstation (dcmtk storescp as BENCHWS), alternating, in
the same run:
  - "stock": pynetdicom 3 as shipped (the handler yields pydicom Datasets; pynetdicom
    encodes each one and sends it through its DUL thread);
  - "front path": the same SCP with the front's send path (archive/dicom/send.py:
    prepared bytes, direct mode on the retrieving associations, commands encoded by hand).
The ratio bare / plain Orthanc is the most the front can reach with this design.
Printed, never asserted.

Run: .venv/bin/python benchmarks/bench_retrieve_ceiling.py [--instances 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks._common import progress, rate_line, ratio, ratio_line  # noqa: E402
from benchmarks.bench_retrieve import WS_AET, PlainScp, _clear, _count, _retrieve  # noqa: E402
from tests.corpus import make_ct_series, to_bytes  # noqa: E402
from tests.harness import base_env, free_port  # noqa: E402

BARE_AET = "BARESCP"


def serve(files_dir: Path, port: int, ws_port: int, front_path: bool) -> None:
    """The bare SCP (child process): every file of `files_dir` in memory, one study."""
    from pydicom import config as pydicom_config
    from pydicom import dcmread
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, _config, evt
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )

    from archive.dicom.front import _contexts, _copy_contexts, _counter, _nodelay, _quick, _slow
    from archive.dicom.send import (
        install_direct_io,
        install_prepared_store,
        prepared_dataset,
        prepared_instance,
        split_file,
    )

    _config.LOG_HANDLER_LEVEL = "none"  # as the front: no logging event handlers
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
    blobs = [p.read_bytes() for p in sorted(files_dir.iterdir())]
    datasets = [dcmread(p) for p in sorted(files_dir.iterdir())]
    if front_path:
        from pynetdicom import transport

        transport.deepcopy = _copy_contexts  # type: ignore[attr-defined]
        install_prepared_store()
        install_direct_io()

    class Entry:
        def __init__(self, ds, blob):
            self.sop_class_uid = str(ds.SOPClassUID)
            self.sop_uid = str(ds.SOPInstanceUID)
            self.transfer_syntax = split_file(blob)[1]

    entries = [Entry(ds, blob) for ds, blob in zip(datasets, blobs, strict=True)]

    def instances(assoc_holder):
        for entry, blob, ds in zip(entries, blobs, datasets, strict=True):
            if not front_path:
                yield ds
                continue
            syntax, body = prepared_dataset(blob, {"PatientID": "NSR-2026-00001"})
            yield prepared_instance(entry.sop_class_uid, entry.sop_uid, syntax, body,
                                    lambda _assoc, ds=ds: ds)  # fmt: skip

    def on_move(event):
        results = {"sent": 0, "failed": 0, "delivered": set(), "current": None, "assoc": None}
        if front_path:
            _quick(event.assoc)
            yield "127.0.0.1", ws_port, {"contexts": _contexts(entries),
                                         "evt_handlers": _counter(results)}  # fmt: skip
        else:  # stock, but TCP_NODELAY (else Nagle costs ~30 ms per image, see the front)
            _nodelay(event.assoc)
            yield (
                "127.0.0.1",
                ws_port,
                {"evt_handlers": [(evt.EVT_ACCEPTED, lambda e: _nodelay(e.assoc))]},
            )
        yield len(entries)
        try:
            for ds in instances(results):
                yield 0xFF00, ds
        finally:
            if front_path:
                _slow(event.assoc)

    def on_get(event):
        if front_path:
            _quick(event.assoc)
        else:
            _nodelay(event.assoc)
        yield len(entries)
        try:
            for ds in instances(None):
                yield 0xFF00, ds
        finally:
            if front_path:
                _slow(event.assoc)

    ae = AE(BARE_AET)
    preferred = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
    syntaxes = preferred + [str(s) for s in ALL_TRANSFER_SYNTAXES if str(s) not in preferred]
    for context in StoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, syntaxes, scu_role=True, scp_role=True)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    if not front_path:  # stock pynetdicom: what a plain pynetdicom SCP would do
        ae.add_requested_context(str(datasets[0].SOPClassUID), preferred)
    handlers = [(evt.EVT_C_MOVE, on_move), (evt.EVT_C_GET, on_get)]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    # as the front does: what was loaded is frozen out of the collector, whose full
    # sweep pynetdicom's server would otherwise run every ~30 s over 200 datasets
    import gc

    gc.freeze()
    server._gc = [0, 600]  # noqa: SLF001
    threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        files, port, ws_port, mode = args.serve
        serve(Path(files), int(port), int(ws_port), mode == "front")
        return

    root = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    inbox, got, files = root / "ws", root / "got", root / "files"
    for d in (inbox, got, files):
        d.mkdir()
    ws_port = free_port()
    scp = subprocess.Popen(
        ["storescp", "-aet", WS_AET, "--output-directory", str(inbox), str(ws_port)],
        env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    plain = PlainScp(root / "plain", ws_port)
    bare: dict[str, tuple[subprocess.Popen, int]] = {}
    rates: dict[str, list[float]] = {}
    try:
        progress(f"writing {args.instances} CT slices 512x512")
        series = make_ct_series(args.instances, rows=512, columns=512)
        for i, ds in enumerate(series):
            (files / f"{i:05d}.dcm").write_bytes(to_bytes(ds))
        uid = str(series[0].StudyInstanceUID)
        plain.start()
        with httpx.Client(base_url=plain.url, timeout=300) as http:
            for path in sorted(files.iterdir()):
                http.post("/instances", content=path.read_bytes()).raise_for_status()
        env = base_env(PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        for mode in ("stock", "front"):
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(files), str(port), str(ws_port), mode],
                env=env, start_new_session=True,
            )  # fmt: skip
            bare[mode] = (process, port)
        time.sleep(3)  # imports; the first retrieve below is a warm-up anyway
        n = args.instances

        def one(name: str, kind: str, port: int, called: str) -> None:
            _clear(inbox)
            _clear(got)
            seconds = _retrieve(kind, port, called, uid, got)
            deadline = time.monotonic() + 30
            target = inbox if kind == "move" else got
            while _count(target) < n and time.monotonic() < deadline:
                time.sleep(0.05)  # storescp writes the last file after its answer
            if _count(target) != n:
                raise SystemExit(f"{name}: {_count(target)} of {n} instances arrived")
            rates.setdefault(name, []).append(n / seconds)

        plan = []
        for kind, label in (("move", "C-MOVE"), ("get", "C-GET")):
            plan += [
                (f"plain Orthanc {label}", kind, plain.dicom_port, plain.aet),
                (f"bare stock {label}", kind, bare["stock"][1], BARE_AET),
                (f"bare front path {label}", kind, bare["front"][1], BARE_AET),
            ]
        for entry in plan:
            one(*entry)
        rates.clear()
        for r in range(args.rounds):
            progress(f"round {r + 1}/{args.rounds} (load {os.getloadavg()[0]:.1f})")
            for entry in plan:
                one(*entry)
    finally:
        for process, _port in bare.values():
            process.terminate()
            process.wait(timeout=10)
        plain.stop()
        scp.terminate()
        scp.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)

    best = {name: max(values) for name, values in rates.items()}
    print(f"Bare pynetdicom SCP vs plain Orthanc, {n} instances 512x512, best of {args.rounds}")
    print(f"load average {os.getloadavg()[0]:.1f}")
    for name, rate in best.items():
        print(rate_line(name, rate))
    for label in ("C-MOVE", "C-GET"):
        for mode in ("stock", "front path"):
            value = ratio(best[f"bare {mode} {label}"], best[f"plain Orthanc {label}"])
            print(ratio_line(f"bare {mode} / plain, {label}", value, 0.9))


if __name__ == "__main__":
    main()
