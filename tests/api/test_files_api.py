"""/api/files end to end on the real server: real parser worker, embedder, vector store and BM25 index."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.account_helpers import admin_token, assert_error, bearer, new_user_token
from tests.conftest import RunningServer, ServerThread, make_settings
from tests.rag import sample_files

MB = 1024 * 1024


def upload(server: RunningServer, token: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/files/upload", files={"file": (name, data, "application/octet-stream")},
        headers=bearer(token), timeout=120,
    )


def retrieve(base_url: str, token: str, query: str, top_k: int = 4) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{base_url}/api/tools/rag_retrieval/invoke", json={"query": query, "top_k": top_k},
        headers=bearer(token), timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"], body
    return list(body["data"])


def documents(server: RunningServer, token: str, **params: int) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/api/files/documents", params=params, headers=bearer(token), timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def leftovers(server: RunningServer, username: str) -> list[str]:
    """Every file the server holds for the user, plus uploads still being received by anyone."""
    data = server.settings.data_dir
    roots = [data / "files" / username, data / "vectors" / username, data / "tmp" / "uploads"]
    return sorted(str(p.relative_to(data)) for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def user(server: RunningServer) -> tuple[str, str]:
    return new_user_token(server, admin_token(server))


def test_each_format_is_uploaded_and_the_right_passage_comes_back_with_its_page(
    server: RunningServer, user: tuple[str, str]
) -> None:
    _, token = user
    uploads = {
        "facts.pdf": sample_files.pdf_bytes(),
        "fleet.docx": sample_files.docx_bytes(),
        "notes.txt": b"The secret ingredient of grandmother's plum cake is cardamom.",
        "guide.md": b"# Hiking\n\nThe trail to Glenfinnan viaduct starts at the visitor centre car park.",
        "orders.json": json.dumps(sample_files.JSON_VALUE).encode(),
        "cities.csv": sample_files.CSV_TEXT.encode(),
    }
    created = {}
    for name, data in uploads.items():
        response = upload(server, token, name, data)
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) >= {"file_id", "filename", "size", "sha256", "pages", "chunks", "status"}
        assert (body["filename"], body["size"], body["status"]) == (name, len(data), "ready")
        assert body["chunks"] >= 1 and body["pages"] == (4 if name.endswith(".pdf") else None)
        created[name] = body
    assert created["cities.csv"]["chunks"] == 3  # 121 rows in groups of at most CHUNK_SIZE characters

    for page, question in [
        (1, "When does the lighthouse keeper of Skerryvore log the weather?"),
        (2, "What was the quarterly revenue of the Hollowbrook bakery?"),
        (3, "Which submarine cable links Reykjavik and Galway?"),
        (4, "Who discovered the blue fern species near Lake Ohrid?"),
    ]:
        top = retrieve(server.base_url, token, question)[0]
        assert (top["filename"], top["page_start"], top["page_end"]) == ("facts.pdf", page, page), question
        assert sample_files.FACTS[page] in top["text"]
        assert top["file_id"] == created["facts.pdf"]["file_id"] and top["source"] == 1
    expectations = [
        ("Which ship of the Northwind fleet was built in 2004 with home port Tromsø?", "fleet.docx",
         "| Borealis | 2004 | Tromsø |"),
        ("What is the secret ingredient of the plum cake?", "notes.txt", "cardamom"),
        ("Where does the trail to Glenfinnan viaduct start?", "guide.md", "visitor centre car park"),
        ("In which city does the customer Bob live? orders customer city Porto", "orders.json",
         "orders[1].customer.city: Porto"),
        ("population of City117", "cities.csv", "City117,Country5,1117"),
    ]
    for question, filename, snippet in expectations:
        top = retrieve(server.base_url, token, question)[0]
        assert top["filename"] == filename and snippet in top["text"], (question, top)
        assert top["page_start"] is None
    csv_hit = retrieve(server.base_url, token, "population of City117")[0]
    assert csv_hit["text"].startswith("city,country,population\n")


def test_the_same_content_again_is_the_same_document_with_200(server: RunningServer, user: tuple[str, str]) -> None:
    _, token = user
    first = upload(server, token, "facts.pdf", sample_files.pdf_bytes())
    again = upload(server, token, "copy of facts.pdf", sample_files.pdf_bytes())
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert documents(server, token)["total"] == 1


def test_delete_then_search_finds_nothing_and_the_same_file_can_be_uploaded_again(
    server: RunningServer, user: tuple[str, str]
) -> None:
    username, token = user
    first = upload(server, token, "facts.pdf", sample_files.pdf_bytes()).json()
    question = "Which submarine cable links Reykjavik and Galway?"
    assert retrieve(server.base_url, token, question)[0]["file_id"] == first["file_id"]

    deleted = httpx.delete(f"{server.base_url}/api/files/documents/{first['file_id']}", headers=bearer(token))
    assert deleted.status_code == 200 and deleted.json() == {"file_id": first["file_id"], "deleted": True}
    assert retrieve(server.base_url, token, question) == []
    assert documents(server, token)["total"] == 0
    assert not any(first["file_id"] in path for path in leftovers(server, username))
    assert_error(httpx.get(f"{server.base_url}/api/files/documents/{first['file_id']}", headers=bearer(token)), 404,
                 "document_not_found")

    again = upload(server, token, "facts.pdf", sample_files.pdf_bytes())
    assert again.status_code == 201 and again.json()["file_id"] != first["file_id"]
    assert retrieve(server.base_url, token, question)[0]["file_id"] == again.json()["file_id"]


def test_another_user_can_neither_list_fetch_delete_nor_retrieve_a_document(
    server: RunningServer, user: tuple[str, str]
) -> None:
    _, alice = user
    _, bob = new_user_token(server, admin_token(server))
    owned = upload(server, alice, "fleet.docx", sample_files.docx_bytes()).json()
    url = f"{server.base_url}/api/files/documents"

    assert documents(server, bob) == {"object": "list", "data": [], "total": 0, "page": 1, "page_size": 50,
                                      "has_more": False}
    for method in ("GET", "DELETE"):
        theirs = httpx.request(method, f"{url}/{owned['file_id']}", headers=bearer(bob))
        missing = httpx.request(method, f"{url}/file-0123456789abcdef0123456789abcdef", headers=bearer(bob))
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["error"]["message"].replace(owned["file_id"], "ID") == \
            missing.json()["error"]["message"].replace("file-0123456789abcdef0123456789abcdef", "ID")
    assert all(hit["file_id"] != owned["file_id"]
               for hit in retrieve(server.base_url, bob, "Northwind ferry ships built 2004 Borealis", top_k=20))
    assert documents(server, alice)["data"][0]["file_id"] == owned["file_id"]
    assert retrieve(server.base_url, alice, "Northwind ferry ships Borealis")[0]["file_id"] == owned["file_id"]
    assert_error(httpx.get(url), 401)


def test_listing_pages_through_own_documents_with_the_total(server: RunningServer, user: tuple[str, str]) -> None:
    _, token = user
    ids = [upload(server, token, f"note{n}.txt", f"Note number {n} says hello.".encode()).json()["file_id"]
           for n in range(3)]
    listing = documents(server, token, page=2, page_size=2)
    assert (listing["total"], listing["page"], listing["page_size"], listing["has_more"]) == (3, 2, 2, False)
    assert [item["file_id"] for item in listing["data"]] == ids[2:]
    item = listing["data"][0]
    assert set(item) == {"file_id", "filename", "kind", "size", "sha256", "pages", "chunks", "uploaded_at", "status"}
    assert documents(server, token, page=1, page_size=2)["has_more"] is True
    single = httpx.get(f"{server.base_url}/api/files/documents/{ids[0]}", headers=bearer(token)).json()
    assert (single["filename"], single["chunks"], single["status"]) == ("note0.txt", 1, "ready")
    assert_error(httpx.get(f"{server.base_url}/api/files/documents", params={"page_size": 500},
                           headers=bearer(token)), 400)


BAD_UPLOADS = [
    ("empty.txt", b"", 400, "empty_file"),
    ("broken.pdf", b"%PDF-1.7\nnot really a pdf", 422, "corrupt_file"),
    ("locked.pdf", sample_files.encrypted_pdf_bytes(), 422, "encrypted_file"),
    ("photo.pdf", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 415, "unsupported_file_type"),
    ("report.txt", sample_files.pdf_bytes(), 415, "unsupported_file_type"),
    ("program.exe", b"\x7fELF", 415, "unsupported_file_type"),
    ("bomb.docx", sample_files.zip_bomb_docx_bytes(), 422, "unsafe_file"),
    ("xxe.docx", sample_files.dtd_docx_bytes(), 422, "unsafe_file"),
    ("fake.db", b"SQLite format 3\x00" + b"\x01" * 3000, 422, "corrupt_file"),
]


@pytest.mark.parametrize(("name", "data", "status", "code"), BAD_UPLOADS, ids=[case[0] for case in BAD_UPLOADS])
def test_a_bad_upload_is_refused_with_a_clear_error_and_leaves_nothing_behind(
    server: RunningServer, user: tuple[str, str], name: str, data: bytes, status: int, code: str
) -> None:
    username, token = user
    error = assert_error(upload(server, token, name, data), status, code)
    assert error["param"] == "file" and len(error["message"]) > 20
    assert leftovers(server, username) == []
    assert documents(server, token)["total"] == 0
    assert retrieve(server.base_url, token, "secret Northwind lighthouse fleet", top_k=20) == []


def test_a_request_that_is_not_a_multipart_file_upload_is_a_400(server: RunningServer, user: tuple[str, str]) -> None:
    username, token = user
    url = f"{server.base_url}/api/files/upload"
    assert_error(httpx.post(url, json={"file": "x"}, headers=bearer(token)), 400, "invalid_upload")
    assert_error(httpx.post(url, files={"other": ("a.txt", b"hi")}, headers=bearer(token)), 400, "invalid_upload")
    two = [("file", ("a.txt", b"one")), ("file", ("b.txt", b"two"))]
    assert_error(httpx.post(url, files=two, headers=bearer(token)), 400, "invalid_upload")
    assert leftovers(server, username) == []


def _raw_request(server: RunningServer, head: bytes, body: Iterator[bytes] | None = None) -> bytes:
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head)
        try:
            for block in body or ():
                connection.sendall(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while the rest was still coming
        received = b""
        while b"\r\n\r\n" not in received:
            block = connection.recv(65536)
            if not block:
                break
            received += block
        return received


def test_an_upload_declared_over_max_upload_mb_gets_413_before_its_body_is_sent(
    server: RunningServer, user: tuple[str, str]
) -> None:
    username, token = user
    size = (server.settings.max_upload_mb + 1) * MB
    head = (f"POST /api/files/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {size}\r\n\r\n").encode()
    started = time.monotonic()
    answer = _raw_request(server, head)  # not one byte of the body is sent
    assert answer.startswith(b"HTTP/1.1 413 ") and time.monotonic() - started < 10
    assert leftovers(server, username) == []


def test_a_streamed_upload_is_cut_off_with_413_once_it_passes_max_upload_mb(
    server: RunningServer, user: tuple[str, str]
) -> None:
    username, token = user
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        block = b"x" * (256 * 1024)
        for _ in range(4 * 200):  # 200 MB if nobody stopped it
            sent += len(block)
            yield block

    def chunked() -> Iterator[bytes]:
        for block in body():
            yield f"{len(block):x}\r\n".encode() + block + b"\r\n"

    head = (f"POST /api/files/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    answer = _raw_request(server, head, chunked())
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert sent < (server.settings.max_upload_mb + 20) * MB
    assert leftovers(server, username) == []


def test_sqlite_and_csv_uploads_become_tables_for_sql_query(
    server: RunningServer, user: tuple[str, str], tmp_path: Path
) -> None:
    _, token = user
    database = upload(server, token, "planets.sqlite", sample_files.sqlite_bytes(tmp_path))
    assert database.status_code == 201, database.text
    body = database.json()
    assert (body["kind"], body["chunks"], body["pages"], body["tables"]) == ("sqlite", 0, None, ["planets"])
    assert upload(server, token, "cities.csv", sample_files.CSV_TEXT.encode()).status_code == 201

    def sql(query: str) -> list[list[Any]]:
        response = httpx.post(f"{server.base_url}/api/tools/sql_query/invoke", json={"query": query},
                              headers=bearer(token), timeout=60)
        assert response.status_code == 200 and response.json()["ok"], response.text
        return list(response.json()["data"]["rows"])

    assert sql("SELECT name FROM planets.planets WHERE moons > 10") == [["Jupiter"]]
    assert sql("SELECT population FROM cities WHERE city = 'City7'") == [[1007]]
    httpx.delete(f"{server.base_url}/api/files/documents/{body['file_id']}", headers=bearer(token))
    response = httpx.post(f"{server.base_url}/api/tools/sql_query/invoke",
                          json={"query": "SELECT name FROM planets.planets"}, headers=bearer(token), timeout=60)
    assert response.json()["ok"] is False


def test_deleting_a_user_removes_their_documents_vectors_and_keyword_entries(server: RunningServer) -> None:
    admin = admin_token(server)
    username, token = new_user_token(server, admin)
    for name, data in [("facts.pdf", sample_files.pdf_bytes()), ("notes.txt", b"a note about plums")]:
        assert upload(server, token, name, data).status_code == 201
    assert leftovers(server, username) != []
    response = httpx.delete(f"{server.base_url}/api/admin/users/{username}", headers=bearer(admin), timeout=60)
    assert response.status_code == 200 and response.json()["removed"]["documents"] == 2
    assert leftovers(server, username) == []
    data = server.settings.data_dir
    assert not (data / "files" / username).exists() and not (data / "vectors" / username).exists()


def test_a_restart_gives_identical_documents_and_retrieval_results(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", admin_password="restart-admin-password")
    questions = ["Which submarine cable links Reykjavik and Galway?", "Which ship was built in 2004?",
                 "lighthouse weather morning"]

    def snapshot(base_url: str, token: str) -> tuple[Any, ...]:
        listing = httpx.get(f"{base_url}/api/files/documents", headers=bearer(token), timeout=30).json()
        return listing, [retrieve(base_url, token, question) for question in questions]

    def sign_in(base_url: str) -> str:
        response = httpx.post(f"{base_url}/api/auth/login", timeout=30,
                              json={"username": settings.admin_username, "password": "restart-admin-password"})
        return str(response.json()["access_token"])

    with ServerThread(settings) as base_url:
        token = sign_in(base_url)
        for name, data in [("facts.pdf", sample_files.pdf_bytes()), ("fleet.docx", sample_files.docx_bytes())]:
            response = httpx.post(f"{base_url}/api/files/upload", files={"file": (name, data)},
                                  headers=bearer(token), timeout=120)
            assert response.status_code == 201, response.text
        before = snapshot(base_url, token)
    with ServerThread(settings) as base_url:
        after = snapshot(base_url, sign_in(base_url))
    assert after == before
    assert before[1][0][0]["page_start"] == 3 and before[0]["total"] == 2
