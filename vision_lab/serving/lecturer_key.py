"""The lecturer's key: what opens, reveals, deletes and closes a class's board or collection.

Set once at launch (`python app.py --lecturer-key ...`, or VISION_LAB_LECTURER_KEY on a Space, where
a secret becomes an environment variable) and typed by the lecturer into a password box: it travels
in a request's body, never in an address a student could see on the projector or in a history.
Compared in constant time (hmac.compare_digest over digests, so neither the characters nor the
length of a guess tell anything), and a server started without one has no lecturer at all.
"""
from __future__ import annotations

import hashlib
import hmac

from ..i18n import text
from .class_db import ClassError

MIN_LENGTH = 8   # a key short enough to guess from the back of the room is refused at launch


def _digest(value: str) -> bytes:
    return hashlib.sha256(str(value).encode("utf-8")).digest()


def check_key_setting(key: str | None) -> str | None:
    """The launch setting, checked: None (no lecturer) or a key of at least MIN_LENGTH characters."""
    if key in (None, ""):
        return None
    if len(key) < MIN_LENGTH:
        raise ValueError(text("class.key_short", length=MIN_LENGTH))
    return key


def require_lecturer(given, expected: str | None) -> None:
    """Raise ClassError unless `given` is the server's lecturer key."""
    if not expected:
        raise ClassError(text("class.no_lecturer_key"))
    if not hmac.compare_digest(_digest(given or ""), _digest(expected)):
        raise ClassError(text("class.wrong_key"))


def is_lecturer(given, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(_digest(given or ""), _digest(expected))
