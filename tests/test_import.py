"""`hexlab import`: the shipped LLaDA-8B-Instruct GSM8K generations, small hand-built inputs, bad
input and the report commands on an imported run.

The counts on the shipped data were computed once by a separate script that reads the original
JSON files with the standard library only, then checked by hand:

    source       setting (answer length / remasking)     generations
    d1           128 / low_confidence (10 rank shards)   1,130
    d1           256 / low_confidence (9 rank shards)    1,130
    d1           512 / low_confidence (10 rank shards)   1,130
    hex_author   256 / low_confidence                    1,319
    hex_author   256 / top_k_margin                      1,319

d1 read 3 x 1,130 = 3,390 generations and hex_author 2 x 1,319 = 2,638, 6,028 in all. The d1 runs
cover the same 1,130 questions, so 1,130 questions have all five settings and the other
1,319 - 1,130 = 189 only the two hex_author ones. The two GSM8K questions with negative golds
(-10 and -3) have a null ground_truth in every setting: 5 x 2 = 10 null golds replaced.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from hexlab.cli import build_parser, main
from hexlab.datasets import load_dataset
from hexlab.import_cli import parse_max_unmatched
from hexlab.runs.import_formats import expand_inputs, remasking_from_name
from hexlab.runs.importer import ImportConfig, import_run, write_run

REAL = Path(__file__).parents[1] / "data" / "real_outputs"
MODEL = "GSAI-ML/LLaDA-8B-Instruct"
ORDER = [
    "d1/gen128/b32/low_confidence",
    "d1/gen256/b32/low_confidence",
    "hex_author/gen256/b32/low_confidence",
    "hex_author/gen256/b32/top_k_margin",
    "d1/gen512/b32/low_confidence",
]


@pytest.fixture(scope="module")
def real_run():
    return import_run(ImportConfig(inputs=(str(REAL),), dataset="gsm8k"))


@pytest.fixture(scope="module")
def real_dir(real_run, tmp_path_factory):
    return write_run(real_run, tmp_path_factory.mktemp("import") / "real")


# the shipped generations: counts ------------------------------------------------------------------


def test_real_rows_read_per_source(real_run):
    counts = real_run.metrics["import"]
    assert counts["rows_read_per_source"] == {"d1": 3390, "hex_author": 2638}
    assert len(real_run.paths) == 6028


def test_real_paths_per_setting_in_order(real_run):
    per_setting = real_run.metrics["import"]["paths_per_setting"]
    assert list(per_setting) == ORDER
    assert list(per_setting.values()) == [1130, 1130, 1319, 1319, 1130]
    assert [s["schedule"] for s in real_run.config["settings"]] == ORDER
    first_path = real_run.paths.groupby("schedule")["path_id"].first()
    assert [first_path[label] for label in ORDER] == [0, 1, 2, 3, 4]


def test_real_questions_by_number_of_settings(real_run):
    counts = real_run.metrics["import"]
    assert counts["questions_joined"] == 1319
    assert counts["questions_by_settings"] == {"2": 189, "5": 1130}
    assert real_run.votes["n_paths"].value_counts().to_dict() == {5: 1130, 2: 189}


def test_real_null_golds_replaced(real_run):
    counts = real_run.metrics["import"]
    assert counts["null_golds_replaced"] == 10
    assert counts["gold_mismatches"] == 0
    assert counts["unmatched_questions"] == 0
    assert counts["repeated_generations_dropped"] == 0
    negative = real_run.paths[real_run.paths["gold"].str.startswith("-")]
    assert sorted(negative["gold"].unique()) == ["-10", "-3"]
    assert len(negative) == 10


def test_real_config_records_sources(real_run):
    config = real_run.config
    assert config["kind"] == "import"
    assert config["model"] == MODEL
    assert (config["dataset"], config["task"]) == ("gsm8k", "gsm8k")
    assert config["gen_length"] is None  # three answer lengths
    assert len(config["sources"]) == 29 + 2
    assert sum(source["n_generations"] for source in config["sources"]) == 6028
    first = config["sources"][0]
    assert first["setting"] == "d1/gen128/b32/low_confidence"
    assert first["sha256"] == hashlib.sha256(Path(first["path"]).read_bytes()).hexdigest()


def test_real_path_columns(real_run):
    paths = real_run.paths
    expected = [
        "question_id", "path_id", "schedule", "block_sizes", "seed", "temperature", "remasking",
        "gen_length", "steps", "text", "gold", "answer", "answer_key", "correct", "collapsed",
        "nfe", "nll",
    ]  # fmt: skip
    assert sorted(paths.columns) == sorted(expected)
    row = paths[paths["schedule"] == "hex_author/gen256/b32/top_k_margin"].iloc[0]
    assert list(row["block_sizes"]) == [32] * 8
    assert (row["gen_length"], row["steps"], row["nfe"]) == (256, 128, 128)
    assert (row["remasking"], row["seed"], row["temperature"]) == ("top_k_margin", 0, 0.0)
    assert paths["nll"].isna().all()
    # rows follow the dataset: gsm8k/0 first, with all five settings
    assert paths["question_id"].iloc[:5].tolist() == ["gsm8k/0"] * 5


# the shipped generations: grading -----------------------------------------------------------------

# Ten rows read by hand: question, setting, the final answer the text states, and whether it
# equals the GSM8K gold. 6 of 10 are correct.
HAND_CHECKED = [
    ("gsm8k/0", ORDER[0], "18", True),  # \boxed{18}, gold 18
    ("gsm8k/489", ORDER[0], "-10", True),  # \boxed{-10}, and the file's gold is null
    ("gsm8k/1113", ORDER[2], "-5", False),  # 2 - 8 + 3 = -3, the box contains -5
    ("gsm8k/1113", ORDER[3], "-3", True),  # \boxed{-3}
    ("gsm8k/1135", ORDER[3], "32", True),  # "\boxed{32" left unclosed before </answer>
    ("gsm8k/2", ORDER[1], "120000", False),  # \boxed{120,000}, gold 70000
    ("gsm8k/7", ORDER[3], "80", False),  # \boxed{80}, gold 160
    ("gsm8k/8", ORDER[1], "0", False),  # \boxed{0}, gold 45
    ("gsm8k/220", ORDER[1], "70", True),  # "\boxed{70\text{ minutes" cut off, gold 70
    ("gsm8k/1", ORDER[4], "3", True),  # \boxed{3} outside the answer tags, gold 3
]


def test_real_hand_checked_rows(real_run):
    paths = real_run.paths.set_index(["question_id", "schedule"])
    for question_id, schedule, answer, correct in HAND_CHECKED:
        row = paths.loc[(question_id, schedule)]
        assert row["answer_key"] == answer, (question_id, schedule)
        assert bool(row["correct"]) is correct, (question_id, schedule)
    graded = [bool(paths.loc[(q, s)]["correct"]) for q, s, _, _ in HAND_CHECKED]
    assert sum(graded) / len(graded) == 0.6


def test_real_setting_accuracy(real_run):
    # correct paths per setting: 803/1130, 892/1130, 1014/1319, 1016/1319, 894/1130
    correct = real_run.paths.groupby("schedule")["correct"].sum()
    assert [int(correct[label]) for label in ORDER] == [803, 892, 1014, 1016, 894]
    accuracy = real_run.metrics["single_path_accuracy"]
    assert accuracy[ORDER[0]] == pytest.approx(803 / 1130, abs=1e-6)
    assert accuracy[ORDER[3]] == pytest.approx(1016 / 1319, abs=1e-6)


def _first_in_order_vote(group: pd.DataFrame) -> tuple[bool, bool]:
    """Majority over answer keys; a tie goes to the key seen first in path order."""
    keys = [key for key in group.sort_values("path_id")["answer_key"] if isinstance(key, str)]
    if not keys:
        return False, False
    counts = Counter(keys)
    top = max(counts.values())
    winner = next(key for key in keys if counts[key] == top)
    first_row = group[group["answer_key"] == winner].sort_values("path_id").iloc[0]
    tied = sum(count == top for count in counts.values()) >= 2
    return bool(first_row["correct"]), tied


def test_real_vote_recomputed(real_run):
    # all questions: 1086/1319 correct, 96 ties; the 1130 with five settings: 937 correct, 50 ties
    votes = {q: _first_in_order_vote(g) for q, g in real_run.paths.groupby("question_id")}
    assert sum(correct for correct, _ in votes.values()) == 1086
    assert sum(tied for _, tied in votes.values()) == 96
    assert real_run.metrics["accuracy"] == pytest.approx(1086 / 1319)
    assert real_run.metrics["tie_rate"] == pytest.approx(96 / 1319)
    complete = real_run.votes[real_run.votes["n_paths"] == 5]
    assert (int(complete["correct"].sum()), int(complete["tie"].sum())) == (937, 50)


# the shipped generations: report commands ---------------------------------------------------------


def test_real_run_scales(real_dir, capsys):
    assert main(["scale", str(real_dir), "--method", "prefix", "--bootstrap", "20"]) == 0
    output = capsys.readouterr().out
    assert "1319" in output


def test_real_run_tables_and_figures(real_dir, tmp_path):
    assert main(["tables", str(real_dir), "--format", "csv", "--out", str(tmp_path / "t"),
                 "--bootstrap", "20"]) == 0  # fmt: skip
    main_results = pd.read_csv(tmp_path / "t" / "main_results.csv")
    assert set(ORDER) <= set(main_results["Method"])
    assert main(["figures", str(real_dir), "--out", str(tmp_path / "f"), "--bootstrap", "20"]) == 0
    assert (tmp_path / "f" / "scaling.png").is_file()


# small hand-built inputs --------------------------------------------------------------------------

GSM8K = load_dataset("gsm8k", limit=3)  # golds 18, 3, 70000


def write_d1(path: Path, questions: list, texts: list, gen_length: int = 64, **fields) -> Path:
    """Write a d1-layout file (gzip when the name ends in .gz)."""
    payload = {
        "generations": [
            {"question": q, "generations": t, "ground_truth": None}
            for q, t in zip(questions, texts, strict=True)
        ],
        "model_path": MODEL,
        "gen_length": gen_length,
        "diffusion_steps": gen_length // 2,
        "block_length": 32,
        **fields,
    }
    data = json.dumps(payload).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def boxed(value: str) -> str:
    return f"<reasoning>work</reasoning><answer>\\boxed{{{value}}}</answer><|eot_id|>"


def test_shards_of_one_setting_merge(tmp_path):
    q = [example.question for example in GSM8K]
    write_d1(tmp_path / "a" / "gsm8k_instruct_64_32_0_generations.json", q[:2], [boxed("18")] * 2)
    write_d1(tmp_path / "a" / "gsm8k_instruct_64_32_1_generations.json.gz", q[2:], [boxed("1")])
    run = import_run(ImportConfig(inputs=(str(tmp_path / "a"),)))
    assert run.paths["schedule"].unique().tolist() == ["a/gen64/b32/low_confidence"]
    assert run.paths["path_id"].unique().tolist() == [0]
    # 18 is right for question 0 only (golds 18, 3, 70000)
    assert run.paths["correct"].tolist() == [True, False, False]
    assert run.metrics["import"]["null_golds_replaced"] == 3


def test_equal_settings_of_two_sources_stay_apart(tmp_path):
    q = [GSM8K[0].question]
    write_d1(tmp_path / "x.json", q, [boxed("18")])
    write_d1(tmp_path / "y.json", q, [boxed("17")])
    run = import_run(ImportConfig(inputs=(f"one={tmp_path / 'x.json'}", f"two={tmp_path}/y.json")))
    assert run.paths["schedule"].tolist() == [
        "one/gen64/b32/low_confidence",
        "two/gen64/b32/low_confidence",
    ]
    # one vote each: a tie that the first path in path order ("one") wins
    assert run.votes["tie"].tolist() == [True]
    assert run.votes["correct"].tolist() == [True]


def test_question_present_in_some_settings(tmp_path):
    q = [example.question for example in GSM8K]
    write_d1(tmp_path / "s" / "long.json", q, [boxed("18"), boxed("3"), boxed("9")], gen_length=128)
    write_d1(tmp_path / "s" / "short.json", q[:1], [boxed("18")])
    run = import_run(ImportConfig(inputs=(str(tmp_path / "s"),)))
    assert run.votes.set_index("question_id")["n_paths"].to_dict() == {
        "gsm8k/0": 2,
        "gsm8k/1": 1,
        "gsm8k/2": 1,
    }
    assert run.metrics["import"]["questions_by_settings"] == {"1": 2, "2": 1}
    # answer length orders the paths: gen64 is path 0, gen128 path 1
    assert run.paths.groupby("schedule")["path_id"].first().to_dict() == {
        "s/gen64/b32/low_confidence": 0,
        "s/gen128/b32/low_confidence": 1,
    }


def test_join_ignores_whitespace(tmp_path):
    spaced = "  " + GSM8K[1].question.replace(" ", "\n ") + "\n"
    write_d1(tmp_path / "w.json", [spaced], [boxed("3")])
    run = import_run(ImportConfig(inputs=(str(tmp_path / "w.json"),)))
    assert run.paths["question_id"].tolist() == ["gsm8k/1"]
    assert run.paths["correct"].tolist() == [True]


def test_generic_json_lines(tmp_path):
    rows = [
        {"question": GSM8K[0].question, "path": "b8", "text": boxed("18"), "block_length": 8,
         "gen_length": 32, "steps": 16, "model": "toy"},
        {"question": GSM8K[0].question, "path": "b16", "text": boxed("5"), "block_length": 16,
         "gen_length": 32, "steps": 16},
        {"question": GSM8K[1].question, "path": "b8", "text": "no answer", "block_length": 8,
         "gen_length": 32, "steps": 16},
    ]  # fmt: skip
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    (tmp_path / "rows.jsonl.gz").write_bytes(gzip.compress(data))
    run = import_run(ImportConfig(inputs=(f"mine={tmp_path / 'rows.jsonl.gz'}",)))
    assert run.config["model"] == "toy"
    assert run.config["gen_length"] == 32
    paths = run.paths.set_index(["question_id", "schedule"])
    assert list(paths.loc[("gsm8k/0", "mine/b8"), "block_sizes"]) == [8, 8, 8, 8]
    assert paths.loc[("gsm8k/0", "mine/b8"), "path_id"] == 0  # smaller blocks first
    assert paths.loc[("gsm8k/0", "mine/b16"), "path_id"] == 1
    assert pd.isna(paths.loc[("gsm8k/1", "mine/b8"), "answer_key"])


def test_generic_rows_without_steps_have_nan_cost(tmp_path):
    row = {"question": GSM8K[0].question, "path": "p", "text": boxed("18")}
    (tmp_path / "r.jsonl").write_text(json.dumps(row) + "\n")
    run = import_run(ImportConfig(inputs=(str(tmp_path / "r.jsonl"),), model="m"))
    assert math.isnan(run.paths["nfe"].iloc[0])
    assert run.paths["gen_length"].isna().all()


def test_identical_repeat_is_dropped_and_counted(tmp_path):
    q = [GSM8K[0].question]
    write_d1(tmp_path / "d" / "a.json", q, [boxed("18")])
    write_d1(tmp_path / "d" / "b.json", q, [boxed("18")])
    run = import_run(ImportConfig(inputs=(str(tmp_path / "d"),)))
    assert len(run.paths) == 1
    assert run.metrics["import"]["repeated_generations_dropped"] == 1


def test_unmatched_within_limit_is_counted(tmp_path):
    questions = [GSM8K[0].question, "How many legs has a spider?"]
    write_d1(tmp_path / "u.json", questions, [boxed("18"), boxed("8")])
    run = import_run(ImportConfig(inputs=(str(tmp_path / "u.json"),), max_unmatched=1))
    counts = run.metrics["import"]
    assert (counts["unmatched_questions"], counts["unmatched_rows"]) == (1, 1)
    assert counts["unmatched_examples"] == ["How many legs has a spider?"]
    assert len(run.paths) == 1


def test_write_run_writes_four_files(tmp_path):
    write_d1(tmp_path / "in" / "g.json", [GSM8K[0].question], [boxed("18")])
    out = write_run(import_run(ImportConfig(inputs=(str(tmp_path / "in"),))), tmp_path / "run")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "metrics.json", "paths.parquet", "votes.parquet",
    ]  # fmt: skip
    assert pd.read_parquet(out / "votes.parquet")["n_paths"].tolist() == [1]


def test_cli_import(tmp_path, capsys):
    write_d1(tmp_path / "in" / "g.json", [GSM8K[0].question], [boxed("18")])
    out = tmp_path / "run"
    assert main(["import", str(tmp_path / "in"), "--dataset", "gsm8k", "--out", str(out)]) == 0
    assert "in/gen64/b32/low_confidence: accuracy 100.00%" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["kind"] == "import"
    # a second import into the same folder needs --overwrite
    assert main(["import", str(tmp_path / "in"), "--dataset", "gsm8k", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    argv = ["import", str(tmp_path / "in"), "--dataset", "gsm8k", "--out", str(out), "--overwrite"]
    assert main(argv) == 0


# bad input ----------------------------------------------------------------------------------------


def test_unknown_format_names_file(tmp_path):
    bad = tmp_path / "table.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match=r"table\.json: unknown format \(top level: \['rows'\]\)"):
        import_run(ImportConfig(inputs=(str(bad),)))
    csv = tmp_path / "table.jsonl"
    csv.write_text("question,text\nq,t\n")
    with pytest.raises(ValueError, match=r"table\.jsonl: unknown format"):
        import_run(ImportConfig(inputs=(str(csv),)))


def test_unmatched_above_limit_raises(tmp_path):
    questions = [GSM8K[0].question, "How many legs has a spider?"]
    write_d1(tmp_path / "u.json", questions, [boxed("18"), boxed("8")])
    # the default limit is 1% of 2 questions read, which rounds down to 0
    with pytest.raises(ValueError, match=r"1 of 2 questions .* --max-unmatched 1"):
        import_run(ImportConfig(inputs=(str(tmp_path / "u.json"),)))


def test_conflicting_texts_raise(tmp_path):
    q = [GSM8K[0].question]
    write_d1(tmp_path / "c" / "a.json", q, [boxed("18")])
    write_d1(tmp_path / "c" / "b.json", q, [boxed("19")])
    with pytest.raises(ValueError, match=r"b\.json and .*a\.json both contain setting .*NAME=PATH"):
        import_run(ImportConfig(inputs=(str(tmp_path / "c"),)))


def test_generic_unknown_field_raises(tmp_path):
    row = {"question": "q", "path": "p", "text": "t", "temprature": 0.5}
    (tmp_path / "r.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl, row 1: unknown fields \['temprature'\]"):
        import_run(ImportConfig(inputs=(str(tmp_path / "r.jsonl"),), model="m"))


def test_missing_model_needs_option(tmp_path):
    row = {"question": GSM8K[0].question, "path": "p", "text": "t"}
    (tmp_path / "r.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="pass --model NAME"):
        import_run(ImportConfig(inputs=(str(tmp_path / "r.jsonl"),)))


def test_inputs_missing_or_repeated(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        expand_inputs([str(tmp_path / "nothing.json")])
    (tmp_path / "notes.md").write_text("notes")
    with pytest.raises(FileNotFoundError, match="contains no .json"):
        expand_inputs([str(tmp_path)])
    file = write_d1(tmp_path / "g.json", [GSM8K[0].question], [boxed("18")])
    with pytest.raises(ValueError, match="given twice"):
        expand_inputs([str(file), str(tmp_path)])


def test_write_run_keeps_other_runs(tmp_path):
    write_d1(tmp_path / "in" / "g.json", [GSM8K[0].question], [boxed("18")])
    run = import_run(ImportConfig(inputs=(str(tmp_path / "in"),)))
    decoded = tmp_path / "decoded"
    decoded.mkdir()
    (decoded / "config.json").write_text(json.dumps({"kind": "run"}))
    with pytest.raises(FileExistsError, match="replaces only imported runs"):
        write_run(run, decoded, overwrite=True)


# helpers ------------------------------------------------------------------------------------------


def test_remasking_from_file_names():
    assert remasking_from_name("gsm8k_LLaDA-8B-Instruct_top_k_margin_256_128_32.json") == (
        "top_k_margin"
    )
    assert remasking_from_name("gsm8k_instruct_256_128_0_generations.json") == "low_confidence"


def test_max_unmatched_parsing():
    assert parse_max_unmatched("5") == 5
    assert parse_max_unmatched("0.02") == 0.02
    for bad in ("-1", "1.5", "many"):
        with pytest.raises(Exception, match="invalid --max-unmatched"):
            parse_max_unmatched(bad)


def test_import_command_registered():
    args = build_parser().parse_args(["import", "x", "--dataset", "gsm8k", "--out", "o"])
    assert args.func.__name__ == "run_import"


def test_label_names_steps_off_default(tmp_path):
    # 64 steps for a 64-token window is one token per step, not the usual two
    write_d1(tmp_path / "e" / "g.json", [GSM8K[0].question], [boxed("18")], diffusion_steps=64)
    run = import_run(ImportConfig(inputs=(str(tmp_path / "e"),)))
    assert run.paths["schedule"].tolist() == ["e/gen64/b32/steps64/low_confidence"]
    assert run.paths["nfe"].tolist() == [64]


def test_d1_setting_the_decoder_rejects(tmp_path):
    # a 64-token window in blocks of 32 is 2 blocks, and each block needs at least one step
    write_d1(tmp_path / "g.json", [GSM8K[0].question], [boxed("18")], diffusion_steps=1)
    with pytest.raises(ValueError, match=r"g\.json: steps=1 is fewer than the 2 blocks"):
        import_run(ImportConfig(inputs=(str(tmp_path / "g.json"),)))


def test_generic_setting_fields_checked(tmp_path):
    base = {"question": GSM8K[0].question, "path": "p", "text": boxed("18")}
    cases = [
        ({"block_length": 8, "gen_length": 32}, "block_length needs gen_length and steps"),
        ({"block_sizes": [8, 8], "gen_length": 32}, "do not sum to gen_length 32"),
        ({"temperature": "hot"}, "field 'temperature' must be a float"),
        ({"seed": 1.5}, "field 'seed' must be a int"),
    ]
    for extra, message in cases:
        (tmp_path / "r.jsonl").write_text(json.dumps({**base, **extra}) + "\n")
        with pytest.raises(ValueError, match=message):
            import_run(ImportConfig(inputs=(str(tmp_path / "r.jsonl"),), model="m"))


def test_one_file_with_two_texts_raises(tmp_path):
    q = GSM8K[0].question
    write_d1(tmp_path / "g.json", [q, q], [boxed("18"), boxed("17")])
    with pytest.raises(ValueError, match=r"g\.json contains two different texts .* remove one"):
        import_run(ImportConfig(inputs=(str(tmp_path / "g.json"),)))


def test_gold_mismatch_counted(tmp_path):
    # the file claims 17 for question 0, whose GSM8K gold is 18; the dataset's gold is kept
    row = {"question": GSM8K[0].question, "path": "p", "text": boxed("18"), "ground_truth": 17}
    (tmp_path / "r.jsonl").write_text(json.dumps(row) + "\n")
    run = import_run(ImportConfig(inputs=(str(tmp_path / "r.jsonl"),), model="m"))
    assert run.metrics["import"]["gold_mismatches"] == 1
    assert run.metrics["import"]["null_golds_replaced"] == 0
    assert run.paths["gold"].tolist() == ["18"]
    assert run.paths["correct"].tolist() == [True]
