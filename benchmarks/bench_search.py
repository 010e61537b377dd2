"""Catalogue search at scale: FTS5 (the project) against an unindexed LIKE scan.

Generates N teaching cases (default 100,000) with realistic random teaching text into a
temporary SQLite database through the catalogue's own schema and triggers, then runs a
few hundred varied searches (words, phrases, prefixes, exclusions, filters, sorts, pages)
through `Catalogue.search`, and the same searches as a LIKE scan over the same rows.
Prints p50/p95 for each and the ratio. Target: FTS p95 < 50 ms.

    .venv/bin/python benchmarks/bench_search.py [--cases 100000] [--queries 300]

`--database FILE` keeps the generated database in FILE, and reuses it when FILE exists
(its cases are not generated again): to compare two versions of the search code in one
sitting, generate once, then run each version on the same file, alternately.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive.catalogue import Catalogue, SearchFilters, SeriesSummary  # noqa: E402
from archive.catalogue.query import parse_query  # noqa: E402
from archive.catalogue.schema import FTS_COLUMNS  # noqa: E402
from archive.db import connect  # noqa: E402

# category -> (modalities, body parts, [(diagnosis, findings phrases, differential)])
TOPICS = {
    "thoracic": (
        ["CT", "CR"],
        ["CHEST", "LUNG"],
        [
            (
                "pneumothorax",
                [
                    "apical lucency without lung markings",
                    "visible visceral pleural line",
                    "deep sulcus sign on the supine film",
                ],
                ["skin fold", "bulla"],
            ),
            (
                "lobar pneumonia",
                ["air bronchograms in the right lower lobe", "consolidation"],
                ["pulmonary infarct", "organising pneumonia"],
            ),
            (
                "pulmonary embolism",
                ["filling defect in the segmental arteries", "right ventricular dilatation"],
                ["mixing artefact"],
            ),
            (
                "sarcoidosis",
                ["bilateral hilar lymphadenopathy", "perilymphatic nodules"],
                ["lymphoma", "tuberculosis"],
            ),
            (
                "lung adenocarcinoma",
                ["spiculated nodule in the upper lobe", "pleural tethering"],
                ["granuloma", "metastasis"],
            ),
        ],
    ),
    "neuroradiology": (
        ["CT", "MR"],
        ["HEAD", "BRAIN"],
        [
            (
                "subarachnoid haemorrhage",
                ["hyperdense blood in the basal cisterns", "early hydrocephalus"],
                ["pseudo-subarachnoid"],
            ),
            (
                "multiple sclerosis",
                [
                    "periventricular plaques perpendicular to the ventricles",
                    "juxtacortical lesions",
                ],
                ["small vessel disease", "ADEM"],
            ),
            (
                "glioblastoma",
                [
                    "ring-enhancing mass crossing the corpus callosum",
                    "surrounding vasogenic oedema",
                ],
                ["abscess", "metastasis"],
            ),
            (
                "acute ischaemic stroke",
                ["loss of grey-white differentiation", "hyperdense middle cerebral artery"],
                ["encephalitis"],
            ),
            (
                "extradural haematoma",
                ["biconvex collection", "overlying skull fracture"],
                ["subdural haematoma"],
            ),
        ],
    ),
    "musculoskeletal": (
        ["CR", "MR", "CT"],
        ["WRIST", "HIP", "KNEE", "ANKLE", "SHOULDER"],
        [
            (
                "scaphoid fracture",
                ["lucent line through the scaphoid waist", "loss of the scaphoid fat stripe"],
                ["normal variant"],
            ),
            (
                "anterior cruciate ligament tear",
                ["discontinuous ligament fibres", "bone bruising of the lateral femoral condyle"],
                ["mucoid degeneration"],
            ),
            (
                "osteosarcoma",
                ["sunburst periosteal reaction", "Codman triangle"],
                ["Ewing sarcoma", "osteomyelitis"],
            ),
            (
                "slipped capital femoral epiphysis",
                ["widened physis", "Klein line not intersecting"],
                ["Perthes disease"],
            ),
            (
                "Lisfranc injury",
                ["widening between the first and second metatarsal bases"],
                ["normal alignment"],
            ),
        ],
    ),
    "gastrointestinal": (
        ["CT", "US", "MR"],
        ["ABDOMEN", "LIVER", "PANCREAS", "COLON"],
        [
            (
                "acute appendicitis",
                ["non-compressible appendix measuring over 6 mm", "periappendiceal fat stranding"],
                ["mesenteric adenitis"],
            ),
            (
                "hepatocellular carcinoma",
                ["arterial enhancement with washout", "background cirrhosis"],
                ["dysplastic nodule"],
            ),
            (
                "acute pancreatitis",
                ["peripancreatic fluid", "pancreatic oedema"],
                ["duodenal perforation"],
            ),
            (
                "small bowel obstruction",
                ["dilated small bowel loops", "transition point"],
                ["ileus"],
            ),
            (
                "sigmoid diverticulitis",
                ["pericolic inflammation", "thickened sigmoid wall"],
                ["colorectal carcinoma"],
            ),
        ],
    ),
    "genitourinary": (
        ["CT", "US"],
        ["KIDNEY", "PELVIS", "PROSTATE"],
        [
            (
                "renal cell carcinoma",
                ["enhancing solid renal mass", "renal vein invasion"],
                ["oncocytoma", "angiomyolipoma"],
            ),
            (
                "obstructing ureteric calculus",
                ["hydronephrosis", "perinephric stranding"],
                ["phlebolith"],
            ),
            ("testicular torsion", ["absent intratesticular flow"], ["epididymo-orchitis"]),
        ],
    ),
    "paediatric": (
        ["CR", "US"],
        ["CHEST", "ABDOMEN"],
        [
            ("intussusception", ["target sign in the right upper quadrant"], ["bowel wall oedema"]),
            ("pyloric stenosis", ["thickened pyloric muscle over 3 mm"], ["pylorospasm"]),
            (
                "non-accidental injury",
                ["posterior rib fractures of different ages", "classic metaphyseal lesions"],
                ["osteogenesis imperfecta"],
            ),
        ],
    ),
    "breast": (
        ["MG", "US", "MR"],
        ["BREAST"],
        [
            (
                "invasive ductal carcinoma",
                ["irregular spiculated mass", "pleomorphic calcification"],
                ["radial scar", "fat necrosis"],
            ),
            (
                "fibroadenoma",
                ["oval circumscribed mass parallel to the skin"],
                ["phyllodes tumour"],
            ),
        ],
    ),
    "emergency": (
        ["CT", "CR"],
        ["CHESTABDPELVIS", "CSPINE", "PELVIS"],
        [
            (
                "traumatic aortic injury",
                ["mediastinal haematoma", "intimal flap at the isthmus"],
                ["ductus diverticulum"],
            ),
            (
                "odontoid fracture",
                ["fracture line through the base of the dens"],
                ["os odontoideum"],
            ),
            (
                "splenic laceration",
                ["linear hypodensity in the spleen", "haemoperitoneum"],
                ["splenic cleft"],
            ),
        ],
    ),
}
HISTORY = [
    "{age} presenting with {symptom} for {n} days.",
    "Referred by the emergency department with {symptom}.",
    "{age} with a background of {background}, now with {symptom}.",
    "Follow-up imaging after treatment; new {symptom}.",
]
SYMPTOMS = [
    "sudden onset pain",
    "breathlessness",
    "fever and raised inflammatory markers",
    "weight loss",
    "a fall onto an outstretched hand",
    "headache and vomiting",
    "haematuria",
    "a palpable lump",
    "reduced consciousness",
    "abdominal distension",
]
BACKGROUNDS = [
    "smoking",
    "diabetes",
    "previous malignancy",
    "chronic liver disease",
    "inflammatory bowel disease",
    "anticoagulation",
    "no significant history",
]
AGES = ["Adult", "Young adult", "Older adult", "Child", "Adolescent", "Infant"]
DISCUSSION = [
    "The key observation is {finding}, which is easily overlooked on a busy list.",
    "{diagnosis} should be considered whenever {finding} is seen.",
    "Correlation with the clinical history narrows the differential considerably.",
    "Comparison with prior imaging is essential before suggesting {diagnosis}.",
    "Cross-sectional imaging confirms the extent and guides management.",
    "Reporting should state the features that change management.",
]
POINTS = [
    "Look for {finding}.",
    "Remember the differential of {alt}.",
    "Review the apices and the edges of the film.",
    "Always check the bone windows.",
    "Use a systematic search pattern.",
    "Know the staging criteria.",
]
SUBTLE = ["subtle", "classic", "atypical", "early", "late", "incidental", "complicated"]


def make_case(rng: random.Random, n: int) -> tuple[dict, list[SeriesSummary]]:
    category = rng.choice(list(TOPICS))
    modalities, parts, diagnoses = TOPICS[category]
    diagnosis, findings, differential = rng.choice(diagnoses)
    modality = rng.choice(modalities)
    finding = rng.choice(findings)
    alt = rng.choice(differential)
    fill = dict(
        age=rng.choice(AGES),
        symptom=rng.choice(SYMPTOMS),
        n=rng.randint(1, 30),
        background=rng.choice(BACKGROUNDS),
        finding=finding,
        diagnosis=diagnosis,
        alt=alt,
    )
    uid = f"2.25.{10**12 + n}"
    series = [
        SeriesSummary(f"{uid}.{i}", modality, f"series {i}", rng.randint(1, 400), f"s{n}-{i}")
        for i in range(1, rng.randint(1, 6) + 1)
    ]
    added = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 3_000_000))
    values = {
        "case_id": f"BEN-{added.year}-{n:06d}",
        "study_uid": uid,
        "orthanc_study_id": f"orthanc-{n}",
        "patient_pseudonym": f"PSN{n:07d}",
        "modalities": [modality],
        "body_part": rng.choice(parts),
        "series_count": len(series),
        "instance_count": sum(s.instance_count for s in series),
        "age_band": rng.choice(["20-24", "40-44", "60-64", "5-9", "80-84"]),
        "sex": rng.choice("MF"),
        "level": rng.choice(["limited-access"] * 4 + ["publication"]),
        "intake": rng.choice(["dicom", "dicom", "rest", "watch-folder"]),
        "status": rng.choice(["available"] * 17 + ["quarantined", "withdrawn", "available"]),
        "study_description": f"{modality} {rng.choice(parts)}",
        "added_at": added.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "updated_at": added.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "title": f"{rng.choice(SUBTLE).capitalize()} {diagnosis}",
        "clinical_history": " ".join(rng.choice(HISTORY).format(**fill) for _ in range(2)),
        "findings": " ".join(f"{f.capitalize()}." for f in rng.sample(findings, len(findings))),
        "diagnosis": diagnosis.capitalize(),
        "differential": ", ".join(differential),
        "discussion": " ".join(rng.choice(DISCUSSION).format(**fill) for _ in range(4)),
        "teaching_points": " ".join(rng.choice(POINTS).format(**fill) for _ in range(3)),
        "anatomy": rng.choice(parts).lower(),
        "references": "Standard radiology textbook, chapter on " + category + ".",
        "keywords": list(dict.fromkeys([diagnosis, category, rng.choice(SUBTLE), modality])),
        "authors": [f"trainer{rng.randint(1, 40)}"],
        "category": category,
        "difficulty": rng.choice(["primary", "intermediate", "advanced"]),
        "review_state": rng.choice(["draft", "reviewed"]),
    }
    return values, series


def make_queries(rng: random.Random, count: int) -> list[dict]:
    words = sorted(
        {w for _, _, ds in TOPICS.values() for d, fs, alts in ds for w in (d, *fs, *alts)}
    )
    queries = []
    for i in range(count):
        kind = i % 8
        pick = rng.choice(words)
        text = {
            0: pick.split()[0],
            1: pick,
            2: f'"{pick}"',
            3: f"{rng.choice(SUBTLE)} {pick.split()[-1]}",
            4: pick.split()[0][:5] + "*",
            5: f"{pick.split()[-1]} -{rng.choice(SUBTLE)}",
            6: "",
            7: f"a {rng.choice(SUBTLE)} {pick} on {rng.choice(['CT', 'MR', 'US'])} for an ST2",
        }[kind]
        category = rng.choice(list(TOPICS))
        filters = {}
        if rng.random() < 0.5:
            filters["modality"] = [rng.choice(TOPICS[category][0])]
        if rng.random() < 0.3:
            filters["category"] = [category]
        if rng.random() < 0.3:
            filters["difficulty"] = [rng.choice(["primary", "intermediate", "advanced"])]
        if rng.random() < 0.2:
            filters["body_part"] = [rng.choice(TOPICS[category][1])]
        if rng.random() < 0.1:
            filters["status"] = ["withdrawn"]
        if rng.random() < 0.1:
            filters["level"] = ["publication"]
        sort = rng.choice(["relevance"] * 5 + ["-added", "title", "added"])
        page = rng.choice([1, 1, 1, 2, 3])
        queries.append({"text": text, "filters": filters, "sort": sort, "page": page})
    return queries


LIKE_COLUMNS = FTS_COLUMNS  # the reference scans the same text the index holds
LIKE_ORDER = {
    "added": "added_at ASC",
    "-added": "added_at DESC",
    "title": "title COLLATE NOCASE",
    "relevance": "added_at DESC",
}


def like_search(conn, q: dict, per_page: int = 20) -> tuple[int, list]:
    """The reference: the same words and filters as a LIKE scan (no index can help)."""
    parsed = parse_query(q["text"])
    where, params = [], []
    for term in parsed.include:
        needle = "%" + " ".join(term.words) + "%"
        where.append("(" + " OR ".join(f"{c} LIKE ?" for c in LIKE_COLUMNS) + ")")
        params += [needle] * len(LIKE_COLUMNS)
    for term in parsed.exclude:
        needle = "%" + " ".join(term.words) + "%"
        where.append("NOT (" + " OR ".join(f"{c} LIKE ?" for c in LIKE_COLUMNS) + ")")
        params += [needle] * len(LIKE_COLUMNS)
    f = q["filters"]
    where.append(
        "status IN ({})".format(",".join("?" * len(f["status"])))
        if "status" in f
        else "status != 'withdrawn'"
    )
    params += f.get("status", [])
    for name in ("category", "difficulty", "body_part", "level"):
        if name in f:
            where.append(f"{name} IN ({','.join('?' * len(f[name]))})")
            params += f[name]
    if "modality" in f:
        where.append("(' ' || modalities || ' ') LIKE ?")
        params.append(f"% {f['modality'][0]} %")
    clause = " AND ".join(where)
    total = conn.execute(
        f"SELECT count(*) FROM catalogue_cases WHERE {clause}",  # noqa: S608
        params,
    ).fetchone()[0]
    rows = conn.execute(
        f"SELECT * FROM catalogue_cases WHERE {clause} ORDER BY {LIKE_ORDER[q['sort']]}"  # noqa: S608
        " LIMIT ? OFFSET ?",
        (*params, per_page, (q["page"] - 1) * per_page),
    ).fetchall()
    return total, rows


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", type=Path, default=None,
                        help="keep the generated database here; reuse it if it exists")  # fmt: skip
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        path = args.database or Path(tmp) / "archive.db"
        reuse = path.exists()
        conn = connect(path)
        conn.execute("PRAGMA synchronous=NORMAL")  # loading speed only; searches are reads
        cat = Catalogue(conn, "BEN", scanner=lambda text: [])
        started = time.perf_counter()
        if not reuse:
            with cat.repo.transaction():
                for n in range(1, args.cases + 1):
                    values, series = make_case(rng, n)
                    cat.repo.insert_case(values)
                    cat.repo.replace_series(values["case_id"], series)
            conn.execute("ANALYZE")
            conn.execute("INSERT INTO catalogue_cases_fts(catalogue_cases_fts) VALUES ('optimize')")
        load = time.perf_counter() - started
        size = path.stat().st_size / 1e6
        cases = conn.execute("SELECT count(*) FROM catalogue_cases").fetchone()[0]
        print(f"{'reused' if reuse else 'generated'} {cases} cases in {load:.1f} s "
              f"({size:.0f} MB database)")  # fmt: skip
        if args.database is not None:  # the same queries whether generated or reused
            rng = random.Random(args.seed + 1)
        queries = make_queries(rng, args.queries)
        for q in queries[:20]:  # warm the page cache for both paths alike
            cat.search(q["text"], SearchFilters.of(**q["filters"]), q["page"], 20, q["sort"])
            like_search(conn, q)
        fts_ms, like_ms, hits = [], [], 0
        for q in queries:
            filters = SearchFilters.of(**q["filters"])
            t0 = time.perf_counter()
            page = cat.search(q["text"], filters, q["page"], 20, q["sort"])
            fts_ms.append((time.perf_counter() - t0) * 1000)
            hits += page.total > 0
            t0 = time.perf_counter()
            like_search(conn, q)
            like_ms.append((time.perf_counter() - t0) * 1000)
        conn.close()

    f50, f95 = percentile(fts_ms, 50), percentile(fts_ms, 95)
    l50, l95 = percentile(like_ms, 50), percentile(like_ms, 95)
    print(f"{len(queries)} searches ({hits} with results), each: count + one page of 20 cases")
    print(
        f"FTS5 (catalogue.search):  p50 {f50:7.2f} ms   p95 {f95:7.2f} ms   "
        f"mean {statistics.mean(fts_ms):7.2f} ms"
    )
    print(
        f"LIKE scan (reference):    p50 {l50:7.2f} ms   p95 {l95:7.2f} ms   "
        f"mean {statistics.mean(like_ms):7.2f} ms"
    )
    print(f"ratio LIKE/FTS5:          p50 {l50 / f50:6.1f}x     p95 {l95 / f95:6.1f}x")
    verdict = "met" if f95 < 50 else "NOT met"
    print(f"target FTS5 p95 < 50 ms: {verdict} ({f95:.2f} ms)")


if __name__ == "__main__":
    main()
