"""The built-in datasets' class names as a reader sees them: a confusion matrix or a top-5 list
shown to a Chinese visitor says 飞机, not airplane, and an MNIST class is just its digit.

The names themselves are data: checkpoints store them, the API returns them and the CLI takes
them, so they never change. Only what is shown is translated, through the catalogue keys
`datasets.class.<dataset>.<name>` (the name in snake case:
`datasets.class.fashion_mnist.t_shirt_top`).
The four built-in datasets share no class name, so a name alone finds its key; a folder dataset's
own class that happens to share a built-in name ("cat") is translated the same way.
"""
from __future__ import annotations

import functools
import re

from ..i18n import Text, render, text


def class_key(dataset: str, name: str) -> str:
    """The catalogue key of one built-in class's shown name."""
    return f"datasets.class.{dataset}.{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}"


@functools.cache
def _keys() -> dict[str, str]:
    from . import _BUILTIN

    return {name: class_key(dataset, name) for dataset, spec in _BUILTIN.items()
            for name in spec.classes}


def all_class_keys() -> list[str]:
    return list(_keys().values())


def class_text(name) -> Text | str:
    """A class name as a message (said in the reader's language when it is a built-in one), or the
    name as it is."""
    key = _keys().get(str(name))
    return text(key) if key else str(name)


def class_label(name, lang: str | None = None) -> str:
    """A class name in `lang` (default: the current language)."""
    return render(class_text(name), lang)


def class_labels(names, lang: str | None = None) -> list[str]:
    return [class_label(name, lang) for name in names]
