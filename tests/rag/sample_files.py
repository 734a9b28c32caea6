"""Documents generated in the tests: multi-page PDFs (reportlab), DOCX with a table (python-docx), and bad files."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from pathlib import Path

import docx
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

FACTS = {
    1: "The lighthouse keeper of Skerryvore logs the weather every morning at six.",
    2: "Quarterly revenue of the Hollowbrook bakery rose to 48,200 euros in spring.",
    3: "The submarine cable Aurora-7 links Reykjavik and Galway under the sea.",
    4: "Professor Linnea Varga discovered the blue fern species near Lake Ohrid.",
}
"""One distinct fact per page, so a question has exactly one right page."""


def pdf_bytes(pages: dict[int, str] | None = None, filler_lines: int = 30) -> bytes:
    """A PDF with one page per entry: its fact first, then filler sentences long enough for chunks to cross pages."""
    pages = pages or FACTS
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, invariant=True)  # same bytes every time
    for number in sorted(pages):
        y = 800
        pdf.drawString(40, y, pages[number])
        for line in range(filler_lines):
            y -= 24
            pdf.drawString(40, y, f"Filler sentence {line} of page {number} about nothing in particular at all.")
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def encrypted_pdf_bytes() -> bytes:
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf_bytes({1: "secret"}))).pages:
        writer.add_page(page)
    writer.encrypt("owner-and-user-password")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(extra_rows: int = 0) -> bytes:
    document = docx.Document()
    document.add_heading("Fleet report", level=1)
    document.add_paragraph("The fleet of the Northwind ferry company has three ships.")
    table = document.add_table(rows=1, cols=3)
    for cell, text in zip(table.rows[0].cells, ["Ship", "Built", "Home port"], strict=True):
        cell.text = text
    rows = [("Aurora", "1998", "Bergen"), ("Borealis", "2004", "Tromsø"), ("Corvus", "2011", "Ålesund")]
    rows += [(f"Extra{n}", str(2000 + n % 20), f"Port number {n}") for n in range(extra_rows)]
    for values in rows:
        cells = table.add_row().cells
        for cell, text in zip(cells, values, strict=True):
            cell.text = text
    document.add_paragraph("All ships pass their safety inspection every March.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def rewrite_zip(data: bytes, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            target.writestr(item.filename, replace.get(item.filename, source.read(item.filename)))
        for name, content in (add or {}).items():
            target.writestr(name, content)
    return out.getvalue()


def zip_bomb_docx_bytes() -> bytes:
    """A real DOCX plus one part of 64 MB of zeros, which deflates about 1000:1."""
    return rewrite_zip(docx_bytes(), {}, {"word/media/padding.bin": b"\0" * (64 * 1024 * 1024)})


def dtd_docx_bytes() -> bytes:
    data = docx_bytes()
    original = zipfile.ZipFile(io.BytesIO(data)).read("word/document.xml")
    head, _, rest = original.partition(b"?>")
    entity = b'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    return rewrite_zip(data, {"word/document.xml": head + b"?>" + entity + rest})


def plain_zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "not a word document")
    return out.getvalue()


def sqlite_bytes(folder: Path) -> bytes:
    path = folder / "built.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE planets (name TEXT, moons INTEGER)")
    connection.executemany("INSERT INTO planets VALUES (?, ?)", [("Mars", 2), ("Jupiter", 95)])
    connection.commit()
    connection.close()
    data = path.read_bytes()
    path.unlink()
    return data


CSV_TEXT = "city,country,population\n" + "".join(f"City{n},Country{n % 7},{1000 + n}\n" for n in range(120))
JSON_VALUE = {
    "orders": [
        {"id": 1, "customer": {"name": "Alice", "city": "Lyon"}, "paid": True},
        {"id": 2, "customer": {"name": "Bob", "city": "Porto"}, "paid": False, "notes": None},
    ],
    "shop": "Tiny Teas",
}
