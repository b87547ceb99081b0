"""A test run leaves nothing in the system's temp dir: what gradio_client downloads, and the folder it
stages each download in, stay in the session's own temp folder (conftest.py,
_temp_files_stay_in_the_session), which pytest prunes."""
import re
import tempfile
from pathlib import Path

import pytest

from conftest import SYSTEM_TEMP

pytestmark = pytest.mark.slow
pytest.importorskip("gradio_client")

STAGING = re.compile(r"[0-9a-f]{40}")   # gradio_client's name for a download's staging folder


def staging_folders(folder: Path) -> set[Path]:
    return {path for path in folder.iterdir() if path.is_dir() and STAGING.fullmatch(path.name)}


def test_client_downloads_stay_in_the_sessions_temp_folder(client, tmp_path_factory):
    session = Path(tempfile.gettempdir())
    assert session != SYSTEM_TEMP and session.is_relative_to(tmp_path_factory.getbasetemp())
    before = staging_folders(session)
    original, gallery, _ = client.predict(image=None, size=32, count=8, seed_value=3,
                                          api_name="/augment")
    downloads = [Path(original)] + [Path(item["image"]) for item in gallery]
    assert all(path.is_file() and path.is_relative_to(session) for path in downloads), downloads
    # One staging folder per file, left empty, here: without the session's folder they would be
    # left in the system's temp dir (about 2,500 of them a full run).
    made = staging_folders(session) - before
    assert len(made) == len(downloads) and not any(any(folder.iterdir()) for folder in made)
