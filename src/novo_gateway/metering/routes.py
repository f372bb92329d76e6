"""Routes of the metering domain (to be completed)."""

from fastapi import APIRouter

router = APIRouter()
