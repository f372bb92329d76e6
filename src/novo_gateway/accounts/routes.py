"""Routes of the accounts domain (to be completed)."""

from fastapi import APIRouter

router = APIRouter()
