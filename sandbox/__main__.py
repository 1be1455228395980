"""``python -m sandbox`` (``make sandbox``): run the sandbox in the foreground until Ctrl-C.

Writes the endpoints and accepted credentials to ``<state-dir>/endpoints.json``; on Ctrl-C (or
SIGTERM) stops every server, job and workload process it started and removes that file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sandbox.faults import parse_fault_spec
from sandbox.ibm.vpc_rules import DEFAULT_QUOTAS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--faults", type=Path, help="JSON file: a list of fault names or {name: options}")
    parser.add_argument("--token-ttl", type=int, default=3600, help="IAM access token lifetime, seconds")
    parser.add_argument(
        "--rate-limit", type=int, default=50, help="Schematics requests per minute per user (0: no limit)"
    )
    parser.add_argument("--resource-delay", type=float, default=0.05, help="seconds per simulated resource")
    parser.add_argument("--state-dir", type=Path, default=Path(".sandbox"))
    parser.add_argument("--workload-venv", type=Path, default=Path(".venv-workload"))
    parser.add_argument(
        "--cos-hmac-role",
        default="Writer",
        help="COS role of the HMAC credential (Writer; Reader cannot write)",
    )
    # The region's quotas, all instances together (IBM's defaults, ibm-cloud-docs/vpc quotas.md).
    parser.add_argument(
        "--gpu-quota", type=int, default=DEFAULT_QUOTAS.gpus, help="GPUs per region, all instances together"
    )
    parser.add_argument(
        "--vcpu-quota", type=int, default=DEFAULT_QUOTAS.vcpu, help="vCPUs per region, all instances together"
    )
    parser.add_argument(
        "--memory-quota",
        type=int,
        default=DEFAULT_QUOTAS.memory_gb,
        help="memory (GB) per region, all instances together",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    try:
        if args.faults:
            faults = parse_fault_spec(args.faults.read_text())
        else:
            faults = parse_fault_spec(os.environ.get("SANDBOX_FAULTS", ""))
    except (OSError, ValueError) as err:
        parser.error(f"bad fault spec: {err}")

    from sandbox.core import Sandbox
    from sandbox.faults import UnknownFaultError

    try:
        box = Sandbox(
            faults=faults,
            token_ttl_s=args.token_ttl,
            rate_limit_per_min=args.rate_limit or None,
            resource_delay_s=args.resource_delay,
            state_dir=args.state_dir,
            workload_venv=args.workload_venv,
            gpu_quota=args.gpu_quota,
            vcpu_quota=args.vcpu_quota,
            memory_quota_gb=args.memory_quota,
            cos_hmac_role=args.cos_hmac_role,
        )
    except (UnknownFaultError, ValueError) as err:
        parser.error(str(err))
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    box.start()
    try:
        print(json.dumps(box.endpoints, indent=2), flush=True)
        print(
            f"sandbox running; endpoints in {box.endpoints_file}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while not done.wait(0.5):
            pass
    finally:
        print("stopping sandbox ...", file=sys.stderr, flush=True)
        box.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
