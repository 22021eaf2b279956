"""Running a coroutine from a test, whatever event loop the test session already holds."""

from __future__ import annotations

import asyncio
import threading


def run_coroutine(coroutine):
    """asyncio.run on a thread of its own: the browser tests' Playwright keeps an event loop running on the main
    thread for the whole session, where asyncio.run refuses to start another."""
    results: list = []
    errors: list = []

    def run() -> None:
        try:
            results.append(asyncio.run(coroutine))
        except BaseException as error:  # noqa: BLE001 - raised again on the caller's thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]
