"""Proof of delivery: uploaded photos and signatures (stored by content hash), and the check that a
delivery's completion names files uploaded for it."""

from __future__ import annotations

from fastapi import UploadFile
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CurrentUser
from api.errors import ProblemError
from api.resources import Resources
from api.schemas.deliveries import ProofFileOut
from db.models import DeliveryRow
from db.repositories.deliveries import ProofFileRepository

PROOF_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff", "image/webp": b"RIFF"}


async def require_uploaded(
    session: AsyncSession, user: CurrentUser, row: DeliveryRow, digests: tuple[str | None, ...]
) -> None:
    """Every proof file a completion names must have been uploaded for this delivery: 422 if not."""
    files = ProofFileRepository(session, user.organization_id)
    for digest in filter(None, digests):
        if not await files.uploaded_for(row.id, digest):
            raise ProblemError(
                422, "unknown_proof_file", f"no proof file {digest} was uploaded for this delivery"
            )


async def store_proof(
    session: AsyncSession, resources: Resources, user: CurrentUser, row: DeliveryRow, file: UploadFile
) -> ProofFileOut:
    """Keep an uploaded PNG, JPEG or WebP image (at most `proof_max_bytes`) for the delivery."""
    limit = resources.settings.proof_max_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ProblemError(413, "file_too_large", f"proof files may be at most {limit} bytes")
    kind = next((t for t, magic in PROOF_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise ProblemError(415, "unsupported_media_type", "upload a PNG, JPEG or WebP image")
    digest = await resources.blobs.put(data)
    files = ProofFileRepository(session, user.organization_id)
    if not await files.known(digest):
        files.add(row.id, digest, kind, len(data), by=user.id)
        await session.commit()
    return ProofFileOut(sha256=digest, content_type=kind, size_bytes=len(data))
