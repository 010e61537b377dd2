"""The controlled vocabulary (curriculum categories, difficulty, body parts) as data.

It lives in policies/catalogue/vocabulary.toml so the school can review and extend it
like code; a missing or malformed file is an error, never a silent empty vocabulary.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from archive.catalogue.errors import CatalogueError
from archive.paths import POLICIES_DIR

VOCABULARY_FILE = "catalogue/vocabulary.toml"
REQUIRED_DIFFICULTIES = ("primary", "intermediate", "advanced")


@dataclass(frozen=True)
class Vocabulary:
    version: str
    categories: dict[str, str]
    difficulties: dict[str, str]
    body_parts: tuple[str, ...]
    body_part_synonyms: dict[str, str]

    def body_part(self, raw: str) -> str:
        """Map a DICOM Body Part Examined value to a term; unknown text becomes OTHER."""
        value = re.sub(r"[\s_\-/]+", " ", (raw or "").strip().upper()).strip()
        if not value:
            return "UNKNOWN"
        if value in self.body_part_synonyms:
            return self.body_part_synonyms[value]
        compact = value.replace(" ", "")
        if compact in self.body_parts:
            return compact
        return self.body_part_synonyms.get(compact, "OTHER")


def load_vocabulary(policies_dir: Path = POLICIES_DIR) -> Vocabulary:
    """Read and check the vocabulary policy; raise CatalogueError saying what to fix."""
    path = Path(policies_dir) / VOCABULARY_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(f"catalogue vocabulary {path} is missing; restore it.") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"catalogue vocabulary {path} is not valid TOML: {exc}") from None
    try:
        version = str(raw["version"])
        categories = {str(k): str(v) for k, v in dict(raw["categories"]).items()}
        difficulties = {str(k): str(v) for k, v in dict(raw["difficulty"]).items()}
        parts = dict(raw["body_parts"])
        terms = tuple(str(t).upper() for t in parts["terms"])
        synonyms = {str(k).upper(): str(v).upper() for k, v in dict(parts["synonyms"]).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogueError(
            f"catalogue vocabulary {path} lacks or mistypes {exc}; see the file's header."
        ) from None
    missing = [d for d in REQUIRED_DIFFICULTIES if d not in difficulties]
    if missing:
        raise CatalogueError(f"catalogue vocabulary {path} lacks difficulty {missing[0]!r}.")
    for source, target in synonyms.items():
        if target not in terms:
            raise CatalogueError(
                f"catalogue vocabulary {path}: synonym {source!r} maps to unknown {target!r}."
            )
    if not categories or "OTHER" not in terms or "UNKNOWN" not in terms:
        raise CatalogueError(
            f"catalogue vocabulary {path} needs categories and body parts OTHER and UNKNOWN."
        )
    return Vocabulary(version, categories, difficulties, terms, synonyms)
