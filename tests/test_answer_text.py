"""The runner's answer text: whole characters, stop strings cut, a possible stop string held back."""

from __future__ import annotations

from corral.plugins.runtime_llamacpp.answer_text import AnswerText


def feed(text: AnswerText, *pieces: bytes) -> list[tuple[str, bool]]:
    return [text.feed(piece) for piece in pieces]


def test_without_stop_strings_text_goes_out_as_it_comes() -> None:
    text = AnswerText([])
    assert feed(text, b"Hello", b", ", b"world") == [("Hello", False), (", ", False), ("world", False)]
    assert text.flush() == ""


def test_a_character_split_over_tokens_goes_out_whole() -> None:
    text = AnswerText([])
    euro = "€".encode()
    assert feed(text, b"a" + euro[:1], euro[1:2], euro[2:] + b"b") == [("a", False), ("", False), ("€b", False)]
    assert AnswerText([]).feed(b"\xff")[0] == "\ufffd"  # not UTF-8 at all: a replacement character
    unfinished = AnswerText([])
    unfinished.feed(euro[:2])
    assert unfinished.flush() == "\ufffd"


def test_a_stop_string_cuts_the_text_and_its_start_is_held_back() -> None:
    text = AnswerText(["<|im_end|>", "STOP"])
    assert feed(text, b"The answer", b" is 42<|im", b"_e") == [("The answer", False), (" is 42", False), ("", False)]
    assert text.feed(b"nd|> and more") == ("", True)
    text = AnswerText(["STOP"])
    assert feed(text, b"ST", b"ART") == [("", False), ("START", False)]  # held, then released
    assert text.feed(b"go STOP now") == ("go ", True)


def test_what_is_held_comes_out_when_the_answer_ends_otherwise() -> None:
    text = AnswerText(["<|im_end|>"])
    assert text.feed(b"Done <|im") == ("Done ", False)
    assert text.flush() == "<|im"


def test_the_earliest_of_several_stop_strings_wins() -> None:
    assert AnswerText(["b", "a"]).feed(b"xxabc") == ("xx", True)
    assert AnswerText(["", "c"]).feed(b"abcd") == ("ab", True)  # an empty stop string is ignored
