"""Routes of the keys domain (to be completed)."""

from fastapi import APIRouter

router = APIRouter()
