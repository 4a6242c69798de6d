import pytest

from ulmrec.tasks import Sample, format_example, format_prompt, letters
from ulmrec.tasks.templates import candidates_text, fields, history_text, rating_text


def test_prompt_is_llamarec_alpaca_format():
    s = Sample("preference_to_index", 0, "Given user's preference, predict the user index.",
               "Preference: likes tea", "<a_1> <b_2> <c_3> <d_4>")
    assert format_prompt(s) == ("### Instruction:\nGiven user's preference, predict the user index.\n\n"
                                "### Input:\nPreference: likes tea\n\n### Response:\n")
    prompt, response = format_example(s)
    assert prompt.endswith("### Response:\n") and response == "<a_1> <b_2> <c_3> <d_4>"


def test_lists_and_fields():
    assert history_text(["x", "y"]) == "(1) x\n(2) y"
    assert history_text(["x", "y", "z"], [5.0, None, None]) == "(1) x (Rating: 5.0)\n(2) y\n(3) z"
    assert candidates_text(["x", "y"]) == "(A) x\n(B) y"
    assert rating_text(4) == "4.0" and rating_text(3.5) == "3.5"
    assert fields(("User ID", "7"), ("User history", "(1) x")) == "User ID: 7;\nUser history: (1) x"


def test_letters():
    assert letters(20)[-1] == "T" and len(letters(26)) == 26
    with pytest.raises(ValueError):
        letters(27)
