"""Routes of the novo_api domain (to be completed)."""

from fastapi import APIRouter

router = APIRouter()
