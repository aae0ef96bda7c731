"""How a CPU training step of the LDM uses the cores: one intra-op thread where the ops are small, and the
frozen first stage encoding the next batch on the core that leaves free.

The U-Net of the CPU-sized models works on maps of 8x8 pixels and fewer: each of its operations takes
microseconds, less than it takes to hand half of it to the other OpenMP thread and wait for it (with the
passive wait policy ldm_dis sets, that thread sleeps between parallel regions and must be woken each
time). Its forward and backward therefore run on one thread (:class:`OneThread`), as do the optimizer and
EMA updates (one short parallel region per tensor), while the extractor's convolutions keep all threads.
During the U-Net the other core would idle: :class:`BackgroundEncoder` computes the next batch's latents
there, so the first-stage encode leaves the step's critical path. Latents are the same bits whichever
thread computes them (convolution forward does not depend on the thread count).

    one_thread = OneThread(enabled=accelerator.device.type == "cpu")
    with one_thread():
        encoder.submit(next_images)            # runs in the background on one thread
        pred = unet(x_t, t, units)
    one_thread.backward(loss, accelerator.backward, until=units)  # all threads once the gradient reaches units
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Optional, Tuple

import torch


class OneThread:
    """Runs parts of a step on one intra-op thread (a no-op when disabled or already single-threaded)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def active(self) -> bool:
        return self.enabled and torch.get_num_threads() > 1

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if not self.active():
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def backward(self, loss: torch.Tensor, backward: Callable[[torch.Tensor], None],
                 until: Optional[torch.Tensor] = None) -> None:
        """``backward(loss)`` on one thread until the gradient of ``until`` (the part's input from the rest
        of the graph) is complete; the rest of the backward pass runs on all threads."""
        if not self.active():
            backward(loss)
            return
        threads = torch.get_num_threads()
        handle = None
        if until is not None and until.requires_grad:
            # the engine runs the graph in reverse creation order: once this gradient is summed, what is
            # left is the part that produced `until`
            handle = until.register_hook(lambda grad: torch.set_num_threads(threads))
        torch.set_num_threads(1)
        try:
            backward(loss)
        finally:
            torch.set_num_threads(threads)
            if handle is not None:
                handle.remove()


class BackgroundEncoder:
    """``encode`` (a frozen network, no gradient) run in a worker thread on one intra-op thread.

    ``submit(images)`` starts the batch a later ``result(images)`` will ask for; ``result`` of anything
    else (the first batch, a batch nobody announced) is computed at once by the same worker, so every
    latent comes from the same code path. ``context`` (e.g. the accelerator's autocast) is entered in the
    worker, since autocast and grad mode are per thread.
    """

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor],
                 context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.encode, self.context = encode, context
        # the worker's own intra-op thread count (OpenMP's is per thread); the caller's keeps its own
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ldm-dis-encode", initializer=torch.set_num_threads,
                                        initargs=(1,))
        self._pending: Optional[Tuple[torch.Tensor, Future]] = None

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self.context():
            return self.encode(images)

    def submit(self, images: Optional[torch.Tensor]) -> None:
        if images is not None and self._pending is None:
            self._pending = (images, self._pool.submit(self._run, images))

    def result(self, images: torch.Tensor) -> torch.Tensor:
        pending, self._pending = self._pending, None
        if pending is not None:
            announced, future = pending
            latents = future.result()
            if announced is images or (announced.shape == images.shape and torch.equal(announced, images)):
                return latents
        return self._pool.submit(self._run, images).result()
