"""A kernel client that knows a fresh kernel is ready in milliseconds, not 0.2 s.

jupyter_client's ``wait_for_ready`` ends by "flushing" IOPub: it reads until no message came for
0.2 s, so every call costs at least 0.2 s of idle waiting, and nbops would pay it twice per stage
(the set-up snippet, then papermill's client). Readiness here means what that wait is for: the
kernel answered ``kernel_info`` on the shell channel, and a status it published for one of our
requests reached us on IOPub (so IOPub is connected and no output of the first cell can be lost).

Used through the managers' documented ``client_class`` trait, so papermill and nbclient get it
from ``km.client()`` without knowing. The one private part of jupyter_client it needs is reached
through ``nbops.executors.compat``.
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_core.utils import ensure_async

from nbops.executors import compat

NUDGE = 0.02  # seconds between kernel_info requests while IOPub is not yet connected
POLL = 0.25  # seconds between liveness checks while waiting for a reply


class FastReadyClient(AsyncKernelClient):
    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        first = self.kernel_info()
        reply = await self._shell_reply(first, deadline)
        await self._until_iopub_connected(first, deadline, timeout)
        compat.adapt_protocol(self, reply)

    async def _until_iopub_connected(
        self, first: str, deadline: float, timeout: float | None
    ) -> None:
        """The kernel answers; IOPub may not be subscribed yet (ZeroMQ drops what a SUB socket
        publishes before it has joined). Nudge with ``kernel_info`` every 20 ms until the kernel's
        ``idle`` for one of our requests arrives: from then on nothing published is lost. The
        extra replies on the shell channel are skipped by whoever reads it (they match no
        request of theirs)."""
        ours = {first}
        nudge_at = time.monotonic() + NUDGE
        while True:
            try:
                msg = await ensure_async(self.iopub_channel.get_msg(timeout=0.01))
            except Empty:
                now = time.monotonic()
                if now > deadline:
                    raise RuntimeError(
                        f"Kernel didn't connect its IOPub channel in {timeout:g} s"
                    ) from None
                if now >= nudge_at:
                    ours.add(self.kernel_info())
                    nudge_at = now + NUDGE
                continue
            if (
                msg["parent_header"].get("msg_id") in ours
                and msg["msg_type"] == "status"
                and msg["content"].get("execution_state") == "idle"
            ):
                return

    async def _shell_reply(self, msg_id: str, deadline: float) -> dict[str, Any]:
        while True:
            try:
                msg = await ensure_async(self.shell_channel.get_msg(timeout=POLL))
            except Empty:
                if not await self.is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("Kernel didn't reply to kernel_info in time") from None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return dict(msg)

    async def run_silently(self, code: str, timeout: float) -> dict[str, Any]:
        """Execute ``code`` without history or output and return the execute reply's content;
        needs only the shell channel (no wait for IOPub)."""
        msg_id = self.execute(code, silent=True, store_history=False, allow_stdin=False)
        reply = await self._shell_reply(msg_id, time.monotonic() + timeout)
        return dict(reply["content"])
