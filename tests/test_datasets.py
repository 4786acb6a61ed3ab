"""Dataset loaders: benchmark row counts and golds, local files, malformed rows, the Hub path."""

import json
import sys
import types
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hexlab.datasets import Example, dataset_hash, load_dataset

DATA = Path(__file__).parents[1] / "data"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# benchmarks ---------------------------------------------------------------------------------------


def test_gsm8k_has_1319_integer_golds():
    examples = load_dataset("gsm8k")
    assert len(examples) == 1319
    assert examples[0].gold == "18"
    assert examples[0].task == "gsm8k"
    assert all(int(example.gold) == float(example.gold) for example in examples)


def test_gsm8k_comma_golds_lose_commas():
    raw = [json.loads(line)["answer"] for line in (DATA / "gsm8k" / "test.jsonl").open()]
    raw_golds = [answer.rsplit("####", 1)[1].strip() for answer in raw]
    examples = load_dataset("gsm8k")
    with_commas = [i for i, gold in enumerate(raw_golds) if "," in gold]
    assert len(with_commas) == 14
    for i in with_commas:
        assert examples[i].gold == raw_golds[i].replace(",", "")
    assert "1450000" in {examples[i].gold for i in with_commas}


def test_gsm8k_keeps_two_negative_golds():
    negatives = [example.gold for example in load_dataset("gsm8k") if example.gold.startswith("-")]
    assert len(negatives) == 2


def test_math500_has_500_answers_with_ids():
    examples = load_dataset("math500")
    assert len(examples) == 500
    assert examples[0].gold == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert examples[0].id == "test/precalculus/807.json"
    assert examples[0].metadata["subject"] == "Precalculus"
    assert len({example.id for example in examples}) == 500


def test_arc_has_1172_questions_and_22_digit_labels():
    examples = load_dataset("arc_challenge")
    assert len(examples) == 1172
    digit = [example for example in examples if example.gold.isdigit()]
    assert len(digit) == 22
    assert all(example.labels[0] == "1" for example in digit)
    assert Counter(len(example.choices) for example in examples)[5] == 3


def test_arc_question_lists_options():
    example = load_dataset("arc_challenge", limit=1)[0]
    assert example.gold == "C"
    assert example.labels == ("A", "B", "C", "D")
    assert "\nOptions:\nA. Planetary density will decrease.\nB. " in example.question
    assert example.question.endswith("\nChoose ONE letter.")


def test_truthfulqa_has_817_shuffled_questions():
    examples = load_dataset("truthfulqa")
    golds = Counter(example.gold for example in examples)
    assert len(examples) == 817
    # mc_task.json lists the correct option first; after shuffling it lands anywhere
    assert golds["A"] < 817 / 2
    assert len(golds) >= 4


def test_truthfulqa_gold_points_at_correct_option():
    rows = json.loads((DATA / "truthfulqa" / "mc_task.json").read_text())
    for example, row in zip(load_dataset("truthfulqa"), rows, strict=True):
        correct = [text for text, flag in row["mc1_targets"].items() if flag == 1][0]
        assert example.choices[example.labels.index(example.gold)] == correct


def test_truthfulqa_order_is_deterministic_and_seeded():
    first, second = load_dataset("truthfulqa"), load_dataset("truthfulqa")
    other_seed = load_dataset("truthfulqa", seed=7)
    assert [e.choices for e in first] == [e.choices for e in second]
    assert [e.choices for e in first] != [e.choices for e in other_seed]
    # the shuffle runs in file order, so a limit keeps the same option order
    assert load_dataset("truthfulqa", limit=5) == first[:5]


def test_limit_keeps_first_rows():
    assert [e.id for e in load_dataset("gsm8k", limit=3)] == ["gsm8k/0", "gsm8k/1", "gsm8k/2"]


@pytest.mark.skipif(not (DATA / "toy" / "test.jsonl").is_file(), reason="toy split not built")
def test_toy_split_has_integer_golds():
    examples = load_dataset("toy")
    assert len(examples) > 0
    assert all(example.task == "toy" for example in examples)
    assert all(example.gold.lstrip("-").isdigit() for example in examples)


def test_toy_reads_data_folder_from_environment(tmp_path, monkeypatch):
    (tmp_path / "toy").mkdir()
    write_jsonl(tmp_path / "toy" / "test.jsonl", [{"id": "t0", "question": "2+3=", "answer": "5"}])
    monkeypatch.setenv("HEXLAB_DATA", str(tmp_path))
    assert load_dataset("toy") == [Example("t0", "toy", "2+3=", "5")]


def test_missing_data_folder_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("HEXLAB_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="HEXLAB_DATA"):
        load_dataset("gsm8k")


# local files --------------------------------------------------------------------------------------


def test_local_jsonl_with_named_fields(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"q": "What is 1/2?", "a": "\\frac12", "x": 1}])
    example = load_dataset(path, question_field="q", answer_field="a", task="math500")[0]
    assert example == Example("mine/0", "math", "What is 1/2?", "\\frac12", metadata={"x": 1})


def test_parquet_choice_rows_load_as_multiple_choice(tmp_path):
    # the 684-question TruthfulQA variant stores choices as a list and the gold as an index
    rows = [{"question": "Sky colour?", "choices": ["green", "blue", "red", "grey"], "label": 1}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "tqa.parquet")
    example = load_dataset(tmp_path / "tqa.parquet")[0]
    assert example.task == "mc"
    assert example.gold == "B"
    assert example.question == (
        "Sky colour?\nOptions:\nA. green\nB. blue\nC. red\nD. grey\nChoose ONE letter."
    )


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n\n{"question": "b", "answer": \n')
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 3: invalid JSON"):
        load_dataset(path, task="gsm8k")


def test_missing_field_names_file_and_line(tmp_path):
    path = write_jsonl(
        tmp_path / "gap.jsonl", [{"question": "a", "answer": "1"}, {"question": "b"}]
    )
    with pytest.raises(ValueError, match=r"gap\.jsonl, line 2: missing field 'answer'"):
        load_dataset(path, task="gsm8k")


def test_non_numeric_gsm8k_gold_raises(tmp_path):
    path = write_jsonl(tmp_path / "words.jsonl", [{"question": "a", "answer": "#### ten"}])
    with pytest.raises(ValueError, match="line 1: gold answer 'ten' is not a number"):
        load_dataset(path, task="gsm8k")


def test_file_without_task_raises(tmp_path):
    path = write_jsonl(tmp_path / "plain.jsonl", [{"question": "a", "answer": "1"}])
    with pytest.raises(ValueError, match="pass task="):
        load_dataset(path)


def test_unknown_dataset_lists_names_and_file_option():
    with pytest.raises(ValueError, match=r"gsm8k, math500.*\.jsonl"):
        load_dataset("squad")


def test_unknown_option_raises():
    with pytest.raises(ValueError, match="unknown option"):
        load_dataset("gsm8k", seed=3)


# Hugging Face Hub ---------------------------------------------------------------------------------


def test_hub_name_loads_through_datasets_package(monkeypatch):
    calls = []

    def fake_load_dataset(name, config, split=None):
        calls.append((name, config, split))
        return [{"question": "Q?", "choices": ["x", "y"], "label": 0}]

    monkeypatch.setitem(
        sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset)
    )
    examples = load_dataset("EleutherAI/truthful_qa_mc")
    assert calls == [("EleutherAI/truthful_qa_mc", "multiple_choice", "validation")]
    assert examples[0].gold == "A"
    assert examples[0].id == "EleutherAI/truthful_qa_mc/0"


def test_hub_name_without_datasets_package_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="pip install datasets"):
        load_dataset("EleutherAI/truthful_qa_mc")


def test_hub_connection_error_is_explained(monkeypatch):
    def offline(name, config, split=None):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(RuntimeError, match="online"):
        load_dataset("someone/some_set", task="gsm8k")


# hashing ------------------------------------------------------------------------------------------


def test_dataset_hash_is_stable_and_content_sensitive():
    examples = load_dataset("gsm8k", limit=20)
    changed = [*examples[:-1], Example(examples[-1].id, "gsm8k", examples[-1].question, "0")]
    assert dataset_hash(examples) == dataset_hash(load_dataset("gsm8k", limit=20))
    assert dataset_hash(examples) != dataset_hash(changed)
    assert len(dataset_hash(examples)) == 16
