"""What the prompt's form leaves on a sample is taken off, and nothing else."""

from __future__ import annotations

import pytest

from epsvec.tidy import tidy


@pytest.mark.parametrize("text, expected", [
    ('"Worst TV"', "Worst TV"),                                       # quoted whole
    ("\u201cGreat value\u201d", "Great value"),
    ("'This appliance is very user-friendly'", "This appliance is very user-friendly"),
    ('"Product 1 had the most value.', "Product 1 had the most value."),  # an opening quote never closed
    ('Works fine."', "Works fine."),
    ("bright and fun</description>", "bright and fun"),               # tag fragments
    ("nice one </en", "nice one"),
    ("ok then <", "ok then"),
    ("<p>Plain text", "Plain text"),
    ('  "Hello," she said.  ', '"Hello," she said.'),                # left alone: real quotes, ...
    ("It's the owner's manual", "It's the owner's manual"),          # apostrophes,
    ("I love it <3", "I love it <3"),                                 # not a tag,
    ("a <b> c", "a <b> c"),                                           # a tag inside
])
def test_wrapping_quotes_and_tag_fragments_come_off(text, expected):
    assert tidy(text) == expected


def test_a_sample_cut_by_the_cap_ends_at_its_last_sentence_when_that_keeps_most_of_it():
    cut = "Good value for the money. It works well and the battery lasts. But the"
    assert tidy(cut, cut_off=True) == "Good value for the money. It works well and the battery lasts."
    assert tidy(cut) == cut  # it stopped on its own: left whole
    early = "Fine. The screen is bright and the sound is good but the case is"
    assert tidy(early, cut_off=True) == early  # its only sentence end would drop most of it
    assert tidy('"Loved it, really!" And the', cut_off=True) == "Loved it, really!"  # the cut leaves a quoted whole
