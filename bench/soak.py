"""Fault soak: SIGKILL the app mid-answer and an import mid-write, round after round, and check what survives.

Run from the repository root (a first run builds the demo model into the data dir; later runs reuse it):
    .venv/bin/python bench/soak.py [--rounds 20] [--kinds text,import,image,audio] [--data-dir DIR] [--seed S]

It starts `python run.py --demo --data-dir D --port P --max-new-tokens M` (D is reused across rounds, and across
runs for the demo model; its database and files are wiped when a run starts) and drives it through the
OpenAI-compatible API with streaming HTTP, timing every chunk as it arrives. It first asks one question of each kind
to the end, and runs one import to the end, to learn how long streaming and importing take. Rounds then rotate
through --kinds:
  text, image, audio  a streamed question of that kind (a fresh PNG or WAV each round, made here); at a random moment
                      within the measured streaming time after it is acknowledged, the app's process group gets
                      SIGKILL, then the app is started again. A second, text question is sent before the kill, by
                      up to twice the time one took to be acknowledged while an answer streamed, so the kill finds it
                      arriving, being stored, between its question and its answer, or queued behind the first.
  import              `python run.py import BIG.zip --data-dir D` (this app's own format: a few conversations holding
                      several MB of fresh PIL images) gets SIGKILL once it has written its first file, after a
                      random part of the time the calibration import took from there to its end; the app, running
                      meanwhile, is then restarted (SIGTERM).

Figures, printed per round as they come and in a summary table (targets from issue 15; exit status 1 if one is missed):
  lost        acknowledged questions, of every round so far, not in the database after the restart; and stored
              attachments whose file is gone ("files missing"). A question is acknowledged when its response's headers
              (with X-Conversation-Id) arrive: api/routes.py sends them only once the question is stored. Target 0.
  text lost   for each answer being streamed at the kill: the characters the client had received beyond the answer's
              text stored after the restart, and how many seconds of streaming that was by the client's own receive
              times: from the chunk that completed the stored prefix (the first text chunk when nothing was stored)
              to the last chunk received; none when the stored text holds all the client received. A round shows its
              worst answer. Target <= 1 s. Stored text that is not a prefix of what the client received (nor the other
              way round) counts as a "mismatch" (a miss).
  integrity   PRAGMA integrity_check after the kill (before the restart) / after the restart. Target "ok" / "ok".
  orphans     files under D/files (`.incoming-*` temporaries included) that no attachment row refers to: new ones the
              kill left (before the restart) / all of them after the restart. Target 0 after the restart.
              The app's sweep for them (issue 15, item 10: storage/orphans.py, run at startup and hourly, removes
              only files older than GRACE_S = 3600 s) would keep the kill's files at an immediate restart, so before
              each restart this script back-dates every file under D/files by --orphan-grace + 60 s, as if the
              restart came that much later (default: GRACE_S where storage.orphans exists, else 3600), and after it
              waits up to --orphan-wait s for a sweep in the background. Should run.py gain an --orphan-grace option,
              the value is passed on too. Code without a sweep keeps its orphans after the restart.
  unanswered  user messages with no answer row under them (so nothing marks them interrupted) / answers still
              `streaming` after the restart (storage/instances.py must mark them interrupted). Target 0 / 0.
  import      import rounds: of the archive's conversations, "none" or "all" in the database after the restart
              (target), or "partial n/K"; "+done" when the import ended before the kill could land.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soak_checks import backdate, first_new_file, import_outcome, integrity, lost_questions, orphans, stored_files, text_lost, unmarked
from soak_client import ROOT, App, Asked, ask, free_port, make_archive, question

MARKER = ".soak-data"  # a data dir this script made, and may wipe
KEPT = {"models", MARKER}  # what a new run keeps of it: the demo model (and Whisper) built once
ANSWER_KINDS = ("text", "image", "audio")
DEFAULT_GRACE_S = 3600.0


def say(text: str = "") -> None:
    print(text, flush=True)


# --- rounds ---------------------------------------------------------------------------------------------------


@dataclass
class Round:
    number: int
    kind: str
    kill_s: float = 0.0
    acked: int = 0
    lost: int = 0  # cumulative, after this round's restart
    missing_files: int = 0
    lost_chars: int = 0
    lost_s: float = 0.0
    mismatch: int = 0
    integrity_kill: str = ""
    integrity_restart: str = ""
    orphans_left: int = 0
    orphans_after: int = 0
    unanswered: int = 0  # new this round
    streaming: int = 0
    restart_s: float = 0.0
    outcome: str = ""

    def cells(self) -> list[str]:
        text = f"{self.lost_chars} / {self.lost_s:.2f}" + (" MISMATCH" if self.mismatch else "")
        text = "-" if self.kind == "import" else text
        return [str(self.number), self.kind, f"{self.kill_s:.2f}", str(self.acked),
                str(self.lost) + (f" +{self.missing_files} files" if self.missing_files else ""), text,
                f"{self.integrity_kill[:40]}/{self.integrity_restart[:40]}", f"{self.orphans_left}/{self.orphans_after}",
                f"{self.unanswered}/{self.streaming}", f"{self.restart_s:.1f}", self.outcome or "-"]


COLUMNS = (("#", 3), ("kind", 6), ("kill s", 6), ("acked", 5), ("lost", 4), ("text lost", 14), ("integrity", 9),
           ("orphans", 7), ("unans/strm", 10), ("restart", 7), ("import", 0))
LEGEND = ("kill s: from the first question's acknowledgement (import: from the first file written) to SIGKILL; "
          "lost: acknowledged questions missing, all rounds so far; text lost: characters / seconds; integrity: after "
          "the kill / after the restart; orphans: new ones left by the kill / all after the restart; unans/strm: "
          "questions newly found with no answer / answers still streaming, after the restart; restart: seconds until "
          "the model answers")


def row(cells: list[str]) -> str:
    padded = (cell.rjust(width) if i == 0 else cell.ljust(width) for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS)))
    return " ".join(padded)


HEADER = row([name for name, _ in COLUMNS])


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = np.random.default_rng(args.seed)
        self.random = random.Random(args.seed)
        self.run_id = uuid.uuid4().hex[:6]
        self.data_dir: Path = args.data_dir
        self.db = self.data_dir / "conversations.sqlite3"
        self.archive = self.data_dir / "soak-import.zip"
        self.app = App(self.data_dir, free_port(), args.max_tokens, args.orphan_grace)
        self.acked: list[Asked] = []
        self.lost: dict[str, Asked] = {}
        self.unanswered: set[int] = set()
        self.orphans: set[Path] = set()  # after the last restart
        self.stream_s: dict[str, float] = {}
        self.import_span = 0.0  # seconds from an import's first file write to its end
        self.ack_s = 0.0  # from sending a text question to its acknowledgement

    def tag(self, label: str) -> str:
        return f"[soak {self.run_id} {label}]"

    def ask(self, kind: str, label: str) -> Asked:
        tag = self.tag(label)
        return ask(self.app, Asked(tag, question(kind, tag, self.rng)), self.args.max_tokens)

    def start_import(self) -> subprocess.Popen:
        with open(self.app.log, "ab") as log:
            log.write(f"\n--- soak: python run.py import {self.archive.name}\n".encode())
            return subprocess.Popen([sys.executable, "run.py", "import", str(self.archive), "--data-dir", str(self.data_dir)],
                                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def calibrate(self, kinds: list[str]) -> None:
        """One answer of each kind and one import, to the end: how long they take (after a short warm-up answer)."""
        warm_up = ask(self.app, Asked(self.tag("warm-up"), self.tag("warm-up") + " Hello."), 16)
        warm_up.thread.join(600)
        if warm_up.acked_at is None:
            raise SystemExit(f"error: a text question was not acknowledged: {warm_up.error}")
        self.acked.append(warm_up)
        for kind in dict.fromkeys(k for k in kinds if k in ANSWER_KINDS):
            asked = self.ask(kind, f"calibrate {kind}")
            asked.acked.wait(120)
            if asked.acked_at is not None and not self.ack_s:  # a text question sent while an answer streams
                time.sleep(0.5)
                busy = self.ask("text", "calibrate second")
                busy.thread.join(600)
                if busy.acked_at is not None:
                    self.acked.append(busy)
                    self.ack_s = busy.acked_at - busy.sent_at
            asked.thread.join(600)
            if asked.acked_at is None or not asked.done or not asked.chunks:
                raise SystemExit(f"error: the {kind} question was not answered: {asked.error}")
            self.acked.append(asked)
            self.stream_s[kind] = asked.chunks[-1][0] - asked.acked_at
            say(f"calibration: a {kind} answer streams {len(asked.text)} characters in {self.stream_s[kind]:.1f} s "
                "after its acknowledgement")
        say(f"calibration: a text question sent while an answer streams is acknowledged {self.ack_s * 1000:.0f} ms "
            "after it is sent")
        if "import" in kinds:
            tag = self.tag("calibrate import")
            expected = make_archive(self.archive, tag, self.rng)
            before = set(stored_files(self.data_dir))
            began = time.monotonic()
            proc = self.start_import()
            first = first_new_file(self.data_dir, before, proc)
            proc.wait()
            end = time.monotonic() - began
            outcome = import_outcome(self.db, tag, expected)
            if proc.returncode != 0 or outcome != "all" or first is None:
                raise SystemExit(f"error: the calibration import failed ({outcome}, status {proc.returncode}); "
                                 f"see {self.app.log}")
            self.import_span = end - (first - began)
            say(f"calibration: importing {self.archive.stat().st_size / 1e6:.1f} MB ({expected} conversations) takes "
                f"{end:.2f} s, {self.import_span:.2f} s of it from the first file written")

    def answer_round(self, r: Round) -> None:
        first = self.ask(r.kind, f"r{r.number} {r.kind}")
        first.acked.wait(120)
        began = first.acked_at or time.monotonic()
        kill_at = began + self.random.uniform(0, self.stream_s[r.kind])
        # Sent just before the kill, so that the kill finds it being stored, between its question and its answer
        # (issue 15, item 11), or waiting in the queue behind the first.
        time.sleep(max(0.0, kill_at - self.random.uniform(0, 2 * self.ack_s) - time.monotonic()))
        second = self.ask("text", f"r{r.number} second")
        time.sleep(max(0.0, kill_at - time.monotonic()))
        killed = time.monotonic()
        self.app.kill()
        r.kill_s = killed - began
        for asked in (first, second):
            asked.thread.join(30)
        answered = [a for a in (first, second) if a.acked_at is not None]
        self.acked += answered
        r.acked = len(answered)
        if first.acked_at is None:
            r.outcome = f"not acknowledged: {first.error}"
        self.restart(r)
        for asked in answered:
            chars, seconds, mismatch = text_lost(self.db, asked, killed)
            r.mismatch += mismatch
            if mismatch:
                say(f"    round {r.number}: {asked.tag}: the stored answer is not a prefix of the {len(asked.text)} "
                    "characters received")
            if (seconds, chars) > (r.lost_s, r.lost_chars):
                r.lost_s, r.lost_chars = seconds, chars

    def import_round(self, r: Round) -> None:
        tag = self.tag(f"r{r.number} import")
        expected = make_archive(self.archive, tag, self.rng)
        before = set(stored_files(self.data_dir))
        proc = self.start_import()
        began = first_new_file(self.data_dir, before, proc) or time.monotonic()
        # Then a random moment of the span the calibration import took from there to its end.
        try:
            proc.wait(self.random.uniform(0, self.import_span))
            done = True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            done = False
        r.kill_s = time.monotonic() - began
        self.restart(r, stop=self.app.stop)
        r.outcome = import_outcome(self.db, tag, expected) + (" +done" if done else "")

    def restart(self, r: Round, stop=None) -> None:
        """Check what the kill left, restart the app (`stop` it first if it runs), and check again."""
        r.integrity_kill = integrity(self.db)
        left = set(orphans(self.data_dir, self.db)[0]) - self.orphans  # new since the last restart: this kill's
        r.orphans_left = len(left)
        if left:
            temporary = sum(p.name.startswith(".incoming-") for p in left)
            say(f"    round {r.number}: the kill left {len(left)} files no row refers to ({temporary} .incoming-*), "
                f"{sum(p.stat().st_size for p in left) / 1e6:.1f} MB")
        if stop is not None:
            stop()
        backdate(self.data_dir, self.args.orphan_grace + 60)  # as if the restart came after the sweep's grace
        r.restart_s = self.app.start()
        r.integrity_restart = integrity(self.db)
        deadline = time.monotonic() + self.args.orphan_wait
        while True:  # a sweep in the background may still be at work
            left, missing = orphans(self.data_dir, self.db)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        r.orphans_after, r.missing_files = len(left), len(missing)
        self.orphans = set(left)
        for asked in lost_questions(self.db, self.acked):
            if asked.tag not in self.lost:
                say(f"    round {r.number}: lost {asked.tag} (conversation {asked.conversation})")
            self.lost[asked.tag] = asked
        r.lost = len(self.lost)
        unanswered, streaming = unmarked(self.db)
        r.unanswered, r.streaming = len(unanswered - self.unanswered), len(streaming)
        if unanswered - self.unanswered or streaming:
            say(f"    round {r.number}: unanswered question ids {sorted(unanswered - self.unanswered)}, "
                f"answers still streaming {sorted(streaming)}")
        self.unanswered |= unanswered

    def run(self) -> int:
        kinds = self.args.kinds
        say(f"soak: {self.args.rounds} rounds of {', '.join(kinds)}; data dir {self.data_dir}, port {self.app.port}, "
            f"seed {self.args.seed}, orphan grace {self.args.orphan_grace:.0f} s; the app's log: {self.app.log}")
        took = self.app.start()
        say(f"the app is ready in {took:.1f} s ({self.app.model})")
        rounds: list[Round] = []
        try:
            self.calibrate(kinds)
            say(textwrap.fill(LEGEND, 120))
            say(HEADER)
            for n in range(1, self.args.rounds + 1):
                r = Round(n, kinds[(n - 1) % len(kinds)])
                with open(self.app.log, "a") as log:
                    log.write(f"\n--- soak: round {n}, {r.kind}\n")
                (self.import_round if r.kind == "import" else self.answer_round)(r)
                rounds.append(r)
                say(row(r.cells()))
        finally:
            self.app.stop()
        return self.summary(rounds)

    def summary(self, rounds: list[Round]) -> int:
        say(f"\nSummary ({len(rounds)} rounds):")
        say(HEADER)
        for r in rounds:
            say(row(r.cells()))
        answers = [r for r in rounds if r.kind != "import"]
        imports = [r for r in rounds if r.kind == "import"]
        worst_s = max(answers, key=lambda r: (r.lost_s, r.lost_chars), default=None)
        worst_chars = max(answers, key=lambda r: r.lost_chars, default=None)
        missing = max((r.missing_files for r in rounds), default=0)
        checks = [
            ("lost acknowledged messages",
             f"{len(self.lost)} of {len(self.acked)} acknowledged; stored files missing {missing}",
             "0", not self.lost and not missing),
            ("max text lost", (f"{worst_s.lost_s:.2f} s ({worst_s.lost_chars} characters, round {worst_s.number}); "
                               f"{worst_chars.lost_chars} characters (round {worst_chars.number}); "
                               if answers else "no answer rounds; ")
             + f"stored text not a prefix: {sum(r.mismatch for r in answers)}", f"<= {self.args.max_lost_s:g} s",
             all(r.lost_s <= self.args.max_lost_s and not r.mismatch for r in answers)),
            ("integrity_check", f"ok after {sum(r.integrity_kill == 'ok' for r in rounds)}/{len(rounds)} kills, "
             f"{sum(r.integrity_restart == 'ok' for r in rounds)}/{len(rounds)} restarts", "ok every round",
             all(r.integrity_kill == r.integrity_restart == "ok" for r in rounds)),
            ("orphan files after restart", f"max {max((r.orphans_after for r in rounds), default=0)}; the kills left "
             f"{sum(r.orphans_left for r in rounds)} in {sum(r.orphans_left > 0 for r in rounds)} rounds", "0",
             all(r.orphans_after == 0 for r in rounds)),
            ("unmarked questions", f"{len(self.unanswered)} with no answer; answers still streaming after a restart: "
             f"{sum(r.streaming for r in rounds)}", "0", not self.unanswered and not any(r.streaming for r in rounds)),
        ]
        if imports:
            kept = [r for r in imports if r.outcome.split()[0] in ("none", "all")]
            seen = dict.fromkeys(r.outcome for r in imports)
            outcomes = ", ".join(f"{o}: {sum(r.outcome == o for r in imports)}" for o in seen)
            checks.append(("import all-or-nothing", f"{len(kept)}/{len(imports)} ({outcomes})", "every import",
                           len(kept) == len(imports)))
        missed = 0
        for name, figure, target, ok in checks:
            missed += not ok
            say(f"  {name:<27} {figure:<78} target {target:<15} {'ok' if ok else 'MISSED'}")
        say(f"{'all targets met' if not missed else f'{missed} target(s) missed'}; the app's log: {self.app.log}")
        return 1 if missed else 0


def prepare(data_dir: Path) -> None:
    """Empty the data dir but for the demo model; refuse a non-empty folder this script did not make."""
    if data_dir.exists() and any(data_dir.iterdir()) and not (data_dir / MARKER).exists():
        raise SystemExit(f"error: {data_dir} holds files this script did not make; name an empty or new --data-dir")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).touch()
    for child in data_dir.iterdir():
        if child.name in KEPT:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def app_grace_s() -> float:
    """The orphan sweep's grace period where the code has one (storage.orphans.GRACE_S), else an hour."""
    sys.path.insert(0, str(ROOT))
    try:
        from storage.orphans import GRACE_S
    except ImportError:
        return DEFAULT_GRACE_S
    return float(GRACE_S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--kinds", default="text,import,image,audio", help="round kinds, in turn: text, image, audio, import")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "local-assistant-soak")
    parser.add_argument("--max-tokens", type=int, default=3000, help="answer length asked for (and --max-new-tokens)")
    parser.add_argument("--max-lost-s", type=float, default=1.0, help="the target for text lost, in seconds")
    parser.add_argument("--orphan-grace", type=float, default=None,
                        help="the app's orphan-sweep grace, s (default: storage.orphans.GRACE_S, or 3600)")
    parser.add_argument("--orphan-wait", type=float, default=5.0, help="how long to wait for orphans to go after a restart, s")
    parser.add_argument("--seed", type=int, default=None, help="for the kill moments and media (default: random)")
    args = parser.parse_args()
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not args.kinds or set(args.kinds) - {*ANSWER_KINDS, "import"}:
        parser.error("--kinds takes text, image, audio and import")
    args.seed = random.randrange(2**31) if args.seed is None else args.seed
    args.orphan_grace = app_grace_s() if args.orphan_grace is None else args.orphan_grace
    args.data_dir = args.data_dir.expanduser().resolve()
    prepare(args.data_dir)
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
