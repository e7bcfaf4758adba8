"""Server-rendered web UI (placeholder until the forms land)."""
from __future__ import annotations

from flask import Blueprint, render_template

from .auth import web_role
from .extensions import backend

bp = Blueprint("web", __name__)


@bp.get("/")
@web_role("viewer")
def index():
    """Namespaces overview."""
    return render_template("error.html", status=200, message=str(backend().rules.namespaces()))
