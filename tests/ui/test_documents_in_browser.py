"""Documents in Chromium: upload a generated PDF watching the progress bar, ask about it in `auto` mode and
see the source with its page and quoted passage, delete it; a refused upload shows the server's words.
Also writes the README's screenshot of a chat with agent steps and sources (docs/screenshot-chat.png)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from tests.ui.conftest import UI, csp_reports, send, set_max_tokens, shot, sign_in, wait_for_answer

README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot-chat.png"
FACT = "The Zorblax reactor in Lake Venn runs on forty-two kilograms of blue sand each week."


def _pdf(path: Path, filler_pages: int) -> Path:
    """Page 1 is about something else; the fact is on page 2; filler pages make the upload take a while."""
    rng = random.Random(7)
    sheet = canvas.Canvas(str(path), pagesize=A4)
    sheet.drawString(72, 760, "Annual report of the Venn Valley cooperative.")
    for line in range(40):  # a full page, so page 2 starts chunks of its own
        sheet.drawString(72, 740 - line * 16, f"Orchard row {line} grows apples and pears on the northern slopes.")
    sheet.showPage()
    sheet.drawString(72, 760, "Energy")
    sheet.drawString(72, 740, FACT)
    sheet.drawString(72, 720, "The reactor was built in 1987 and is inspected every spring.")
    sheet.showPage()
    for page in range(filler_pages):
        # Random words compress badly, so the file is large enough for the progress bar to move.
        for line in range(48):
            words = " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
                             for _ in range(12))
            sheet.drawString(40, 800 - line * 16, f"appendix {page} {words}")
        sheet.showPage()
    sheet.save()
    return path


def _throttle_uploads(page: Any, bytes_per_second: int) -> None:
    """Chromium's own network emulation slows the upload so the bar shows intermediate values."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second})


def _record_progress(page: Any) -> None:
    page.evaluate("""() => {
        window.__progress = [];
        const bar = document.querySelector('#upload-progress');
        new MutationObserver(() => window.__progress.push(Number(bar.value)))
            .observe(bar, {attributes: true, attributeFilter: ['value']});
    }""")


def test_upload_a_pdf_ask_about_it_see_its_page_then_delete_it(page: Any, ui: UI, tmp_path: Path) -> None:
    pdf = _pdf(tmp_path / "venn-report.pdf", filler_pages=40)
    sign_in(page, ui)
    page.click("nav .nav[data-panel='documents']")
    expect(page.locator("#no-documents")).to_be_visible()
    _record_progress(page)
    _throttle_uploads(page, max(pdf.stat().st_size // 3, 50_000))
    page.set_input_files("#file-input", str(pdf))
    expect(page.locator("#upload-status")).to_be_visible()
    row = page.locator("#document-rows tr", has_text="venn-report.pdf")
    expect(row).to_be_visible(timeout=120_000)
    progress = page.evaluate("() => window.__progress")
    assert any(0 < value < 100 for value in progress), progress  # it moved, not just jumped to the end
    assert progress == sorted(progress) and progress[-1] == 100
    expect(page.locator("#upload-percent")).to_have_text("Done")
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "42" and int(cells[2]) >= 1 and cells[3] == "ready", cells
    listed = ui.api("GET", "/api/files/documents").json()["data"]
    assert [doc["filename"] for doc in listed] == ["venn-report.pdf"]
    shot(page, "documents")

    page.click("nav .nav[data-panel='chat']")
    set_max_tokens(page, 64)
    page.select_option("#mode", "auto")
    send(page, "What does my document say about the Zorblax reactor?")
    wait_for_answer(page)
    answer = page.locator(".message.assistant").last
    expect(answer.locator(".badge.mode")).to_have_text("ReAct")
    expect(answer.locator(".steps-table")).to_contain_text("rag_retrieval")
    source = answer.locator(".source-doc", has_text="venn-report.pdf").first
    expect(source).to_contain_text("p. 2")
    quote = answer.locator(".source .quote").first
    expect(quote).to_be_hidden()
    source.click()
    expect(quote).to_be_visible()
    expect(quote).to_contain_text("blue sand")
    README_SCREENSHOT.parent.mkdir(exist_ok=True)
    shot(page, "readme", README_SCREENSHOT)
    shot(page, "chat-with-sources")

    page.click("nav .nav[data-panel='documents']")
    row.get_by_role("button", name="Delete venn-report.pdf").click()
    expect(row).to_have_count(0)
    expect(page.locator("#no-documents")).to_be_visible()
    assert ui.api("GET", "/api/files/documents").json()["data"] == []
    assert csp_reports(page) == []


def test_a_refused_upload_shows_the_servers_message(page: Any, ui: UI, tmp_path: Path) -> None:
    bad = tmp_path / "program.exe"
    bad.write_bytes(b"MZ\x90\x00" + bytes(200))
    sign_in(page, ui)
    page.click("nav .nav[data-panel='documents']")
    page.set_input_files("#file-input", str(bad))
    expect(page.locator("#upload-error")).to_contain_text("program.exe")
    expect(page.locator("#toast")).to_be_visible()
    expected = ui.api("POST", "/api/files/upload", files={"file": ("program.exe", bad.read_bytes())})
    assert expected.status_code >= 400
    assert expected.json()["error"]["message"] in page.inner_text("#upload-error")
    expect(page.locator("#upload-percent")).to_have_text("Failed")
    assert page.locator("#document-rows tr").count() == 0
