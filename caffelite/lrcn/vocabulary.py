"""LRCN's caption tokenization and vocabulary file.

Tokenization (LRCN ``split_sentence``)
    pieces = re.split(r'(\\W+)', caption.strip()); keep pieces whose strip() is
    non-empty, lowercased; drop the last piece if it is exactly "."; strip each.
    Punctuation other than a final "." stays as tokens (e.g. "," or "'").

Vocabulary (``vocabulary.txt``, one word per line)
    line 0 is "<unk>"; then the training words with count >= min_count, sorted by
    (-count, word). The *network* vocabulary (``decoder_words``) is ["<EOS>"] + lines, so
    a word on line k has id k + 1, id 0 is <EOS>, id 1 is <unk> (LRCN's captioner.py reads
    the file the same way).
"""

import re

from ..errors import CaffeliteError

UNK = "<unk>"
EOS = "<EOS>"
_SPLIT = re.compile(r"(\W+)")


def split_sentence(sentence):
    """LRCN tokenization: str -> list of lowercase tokens (final '.' dropped)."""
    pieces = [s.lower() for s in _SPLIT.split(sentence.strip()) if s.strip()]
    if pieces and pieces[-1] == ".":
        pieces = pieces[:-1]
    return [p.strip() for p in pieces]


def build_vocabulary(sentences, min_count=5):
    """list of token lists -> vocabulary list ['<unk>', words by (-count, word)]."""
    counts = {}
    for sent in sentences:
        for w in sent:
            counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))
    return [UNK] + [w for w in words if counts[w] >= min_count]


def read_vocabulary(path):
    """vocabulary.txt -> list of words; must contain '<unk>' and no blank lines."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise CaffeliteError("%s: cannot read vocabulary (%s)" % (path, e.strerror))
    while lines and lines[-1].strip() == "":
        lines.pop()
    words = [l.strip() for l in lines]
    if any(w == "" for w in words):
        raise CaffeliteError("%s: blank line %d in vocabulary" % (path, words.index("") + 1))
    if UNK not in words:
        raise CaffeliteError("%s: vocabulary has no '%s' entry" % (path, UNK))
    if len(set(words)) != len(words):
        raise CaffeliteError("%s: vocabulary has duplicate words" % path)
    return words


def decoder_words(path):
    """vocabulary.txt -> the network's words by id: ['<EOS>'] + the file's lines."""
    return [EOS] + read_vocabulary(path)
