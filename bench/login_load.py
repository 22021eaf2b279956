"""How sign-ins being checked affects everyone else: `GET /v1/models` latency while idle and while several wrong
passwords are checked at once (argon2, ~50 ms of CPU each).

    python bench/login_load.py [--logins 6] [--rounds 3]

Starts `run.py --demo` with one user in a temporary data dir. Prints the p50 and max latency of /v1/models alone and
during the logins, and their ratio; and how the logins were answered (400 wrong password, 429 paused). Each login
uses its own name, so the per-account limit never pauses them; rounds × logins stays under the per-address limit.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed_get(url: str, key: str) -> float:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def login(url: str, name: str) -> int:
    body = urllib.parse.urlencode({"username": name, "password": "a wrong password"}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/login", data=body), timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def latencies(url: str, key: str, stop: threading.Event, out: list[float], interval: float = 0.02) -> None:
    while not stop.is_set():
        out.append(timed_get(url, key))
        time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from tests.helpers import free_port

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)

        def cli(*words: str) -> str:
            return subprocess.run([sys.executable, str(ROOT / "run.py"), *words, "--data-dir", str(data)], input="a-long-password\n",
                                  text=True, capture_output=True, check=True, cwd=ROOT).stdout  # fmt: skip

        cli("adduser", "alice", "--password-stdin")
        key = cli("apikey", "create", "--user", "alice").splitlines()[-1]
        port = free_port()
        app = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "--demo", "--data-dir", str(data), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    timed_get(f"{url}/v1/models", key)
                    break
                except OSError:
                    time.sleep(0.2)
            idle = [timed_get(f"{url}/v1/models", key) for _ in range(40)]
            busy: list[float] = []
            statuses: list[int] = []
            for round_ in range(args.rounds):
                stop = threading.Event()
                watcher = threading.Thread(target=latencies, args=(f"{url}/v1/models", key, stop, busy))
                watcher.start()
                threads = [threading.Thread(target=lambda i=i: statuses.append(login(url, f"guest{round_}-{i}")))
                           for i in range(args.logins)]  # fmt: skip
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                stop.set()
                watcher.join()
        finally:
            app.terminate()
            app.wait(timeout=30)

    def figures(values: list[float]) -> str:
        return f"p50 {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms (n={len(values)})"

    print(f"/v1/models idle:                          {figures(idle)}")
    print(f"/v1/models during {args.logins} concurrent bad logins: {figures(busy)}")
    print(f"ratio of max latency, busy / idle p50:    {max(busy) / statistics.median(idle):.1f}")
    print(f"login answers: {sorted(statuses)}")


if __name__ == "__main__":
    main()
