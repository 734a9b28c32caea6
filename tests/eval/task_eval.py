"""End-to-end task accuracy: each task of `tasks.jsonl` asked through the OpenAI API (`mode: auto`), answer checked.

A task is right when the answer holds every expected value as `answer_check.contains_value` finds it (a
whole token; numbers by value; one of the alternatives where a list is given). Document tasks upload a
generated two-page PDF first (`POST /api/files/upload`, the RAG issue's API); on a server without that
API they are reported as not run, never counted as passed.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from backend.agents.answer_check import contains_value

TASKS = Path(__file__).with_name("tasks.jsonl")
REQUEST_TIMEOUT_S = 180.0
DOCUMENT_NAME = "handbook.pdf"
DOCUMENT_PAGES = (
    "Staff handbook. The office opens at 8 am and closes at 6 pm on working days. "
    "Employees receive 25 days of paid leave per year. Leave requests go to your team lead.",
    "Expenses. Expense claims must be filed within 30 days of purchase. "
    "The travel budget per trip is 1200 euros. Receipts are kept for seven years.",
)


@dataclass(frozen=True)
class Task:
    id: str
    category: str
    question: str
    expect: tuple[str | tuple[str, ...], ...]

    def missing(self, answer: str) -> list[str]:
        out = []
        for expected in self.expect:
            options = (expected,) if isinstance(expected, str) else expected
            if not any(option in answer if option.startswith("[") else contains_value(answer, option)
                       for option in options):
                out.append(" | ".join(options))
        return out


@dataclass
class TaskEvaluation:
    by_category: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Category -> (correct, total) of the tasks that ran."""
    not_run: dict[str, str] = field(default_factory=dict)
    """Category -> why its tasks did not run (a server without the upload API)."""
    misses: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(task id, mode, missing values, answer)."""
    latencies: dict[str, list[float]] = field(default_factory=dict)
    """Mode the router chose -> seconds per request."""
    modes: dict[str, dict[str, int]] = field(default_factory=dict)
    """Category -> mode -> count."""

    @property
    def correct(self) -> int:
        return sum(right for right, _ in self.by_category.values())

    @property
    def total(self) -> int:
        return sum(seen for _, seen in self.by_category.values())

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def load_tasks(path: Path = TASKS) -> list[Task]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        Task(row["id"], row["category"], row["question"],
             tuple(e if isinstance(e, str) else tuple(e) for e in row["expect"]))
        for row in rows
    ]


def handbook_pdf() -> bytes:
    """The document the document tasks ask about: two pages, one fact set each."""
    from reportlab.lib.pagesizes import A4  # the RAG issue's test dependency
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for page in DOCUMENT_PAGES:
        text = pdf.beginText(60, 780)
        for sentence in page.split(". "):
            text.textLine(sentence.rstrip(".") + ".")
        pdf.drawText(text)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def upload_document(client: httpx.Client) -> str | None:
    """Uploads the handbook; None when it is in, else why the document tasks cannot run."""
    probe = client.get("/api/files/documents")
    if probe.status_code == 404:
        return "this server has no document upload (/api/files lands with the RAG issue)"
    response = client.post("/api/files/upload", files={"file": (DOCUMENT_NAME, handbook_pdf(), "application/pdf")})
    if response.status_code not in (200, 201):
        return f"the upload failed: {response.status_code} {response.text[:200]}"
    return None


def ask(client: httpx.Client, model: str, question: str) -> tuple[str, str, float]:
    """(answer, the mode the router chose, seconds) for one non-streamed request with `mode: auto`."""
    started = time.monotonic()
    response = client.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": question}], "mode": "auto", "temperature": 0,
    })
    elapsed = time.monotonic() - started
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}", "error", elapsed
    body: dict[str, Any] = response.json()
    mode = str((body.get("agent") or {}).get("mode", response.headers.get("X-Agent-Mode", "?")))
    return str(body["choices"][0]["message"]["content"] or ""), mode, elapsed


def evaluate_tasks(base_url: str, api_key: str, model: str, tasks: Sequence[Task] | None = None,
                   *, categories: Sequence[str] = (), progress: Callable[[str], None] | None = None) -> TaskEvaluation:
    """Ask every task (one at a time: the embedded model serves one generation at once anyway)."""
    chosen = [t for t in (tasks or load_tasks()) if not categories or t.category in categories]
    evaluation = TaskEvaluation()
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        if any(task.category == "documents" for task in chosen):
            reason = upload_document(client)
            if reason:
                evaluation.not_run["documents"] = reason
        for task in chosen:
            if task.category in evaluation.not_run:
                continue
            answer, mode, elapsed = ask(client, model, task.question)
            missing = task.missing(answer)
            right, seen = evaluation.by_category.get(task.category, (0, 0))
            evaluation.by_category[task.category] = (right + (not missing), seen + 1)
            evaluation.latencies.setdefault(mode, []).append(elapsed)
            counts = evaluation.modes.setdefault(task.category, {})
            counts[mode] = counts.get(mode, 0) + 1
            if missing:
                evaluation.misses.append((task.id, mode, ", ".join(missing), answer[:300]))
            if progress is not None:
                progress(f"{task.id:<14} {mode:<13} {elapsed:6.1f} s  {'ok' if not missing else 'MISS'}")
    return evaluation
