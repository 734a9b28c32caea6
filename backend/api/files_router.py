"""/api/files: upload documents and manage your own. Someone else's file id answers 404, as a missing one does."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from backend.api.deps import CurrentUser, DocumentServiceDep, SettingsDep
from backend.api.upload_stream import received_upload

router = APIRouter(prefix="/api/files", tags=["files"])


@router.post(
    "/upload",
    responses={201: {"description": "A new document."}, 200: {"description": "The same content was already there."}},
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}},
    }}}}},
)
async def upload_file(
    request: Request, user: CurrentUser, documents: DocumentServiceDep, settings: SettingsDep
) -> JSONResponse:
    """Upload one PDF, DOCX, TXT, MD, JSON, CSV or SQLite file (multipart field `file`)."""
    with documents.ingestion_slot(user.username):
        async with received_upload(request, settings.max_upload_mb, documents.incoming_dir) as incoming:
            result = await documents.ingest(user.username, incoming)
    return JSONResponse(result.document.public(), status_code=201 if result.created else 200)


@router.get("/documents")
async def list_documents(
    user: CurrentUser,
    documents: DocumentServiceDep,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number.")] = 1,
    page_size: Annotated[int, Query(ge=1, le=200, description="Documents per page.")] = 50,
) -> dict[str, Any]:
    """Your documents, oldest first."""
    listing = await documents.list_documents(user.username, page, page_size)
    return {
        "object": "list",
        "data": [record.public() for record in listing.documents],
        "total": listing.total,
        "page": listing.page,
        "page_size": listing.page_size,
        "has_more": (listing.page - 1) * listing.page_size + len(listing.documents) < listing.total,
    }


@router.get("/documents/{file_id}")
async def get_document(file_id: str, user: CurrentUser, documents: DocumentServiceDep) -> dict[str, Any]:
    return (await documents.get_document(user.username, file_id)).public()


@router.delete("/documents/{file_id}")
async def delete_document(file_id: str, user: CurrentUser, documents: DocumentServiceDep) -> dict[str, Any]:
    """Removes the file, its vectors, its keyword entries and its metadata."""
    await documents.delete_document(user.username, file_id)
    return {"file_id": file_id, "deleted": True}
