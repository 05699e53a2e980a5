"""The end of every process a test launches (torchrun / ``accelerate launch``, 2 processes, gloo, CPU)."""

import os
import sys


def leave() -> None:
    """Meet the other ranks, destroy the process group and exit without Python's finalisation.

    Everything a launched script writes is written before it calls this. On CPU, torch 2.13's gloo worker threads
    can still be freeing a collective's work object while Python finalises; the thread is then made to exit inside
    a noexcept C++ frame and the process aborts ("terminate called without an active exception"; core backtrace
    for FSDP2: ProcessGroupGloo::runLoop -> ~AsyncAllgatherCoalescedWork -> decref -> take_gil ->
    PyThread_exit_thread while the main thread is in Py_FinalizeEx). Seen about one launch in 15 under FSDP2 and
    once in CI under DeepSpeed ZeRO-3 (both ranks, after training had finished). docs/distributed.md tells users.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
