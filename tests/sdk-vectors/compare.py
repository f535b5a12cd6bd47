#!/usr/bin/env python3
"""compare.py expected VECTORS ACTUAL_JSON_FILE LANG -> exit 1 on any mismatch.
compare.py doc DOC FILE... -> exit 1 unless DOC contains each file's text verbatim."""
import json
import sys


def expected(v):
    out = {}
    for t in v["tickets"]:
        out[f"ticket/{t['name']}/ticket"] = t["ticket"]
        out[f"ticket/{t['name']}/signature"] = t["signature"]
    for m in v["systemMessages"]:
        out[f"sysmsg/{m['name']}/signature"] = m["signature"]
    for c in v["webhook"]["cases"]:
        out[f"webhook/{c['name']}"] = c["valid"]
    return out


def compare(vectors_path, actual_path, lang):
    with open(vectors_path, encoding="utf-8") as f:
        want = expected(json.load(f))
    with open(actual_path, encoding="utf-8") as f:
        text = f.read()
    try:
        got = json.loads(text)
    except ValueError:
        print(f"  {lang}: output is not JSON:\n{text[:2000]}")
        return 1
    bad = 0
    for key, value in want.items():
        if got.get(key) != value:
            bad += 1
            print(f"  {lang}: MISMATCH {key}\n    expected {json.dumps(value, ensure_ascii=False)}\n    got      {json.dumps(got.get(key), ensure_ascii=False)}")
    print(f"  {lang}: {len(want) - bad}/{len(want)} vectors match")
    return 1 if bad else 0


def doc(doc_path, files):
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    bad = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            body = f.read().strip("\n")
        if body in text:
            print(f"  doc: {path} is in {doc_path} verbatim")
        else:
            bad += 1
            print(f"  doc: {path} differs from its copy in {doc_path} (paste the file's text into the guide)")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "expected":
        sys.exit(compare(sys.argv[2], sys.argv[3], sys.argv[4]))
    if sys.argv[1] == "doc":
        sys.exit(doc(sys.argv[2], sys.argv[3:]))
    sys.exit(f"unknown mode {sys.argv[1]}")
