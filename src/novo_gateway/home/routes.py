"""Routes of the home domain (to be completed)."""

from fastapi import APIRouter

router = APIRouter()
